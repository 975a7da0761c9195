package tollgate_test

import (
	"math"
	"testing"

	tollgate "github.com/tollgate/tollgate/clients/go"
)

func TestFormatUSD(t *testing.T) {
	for nanos, want := range map[int64]string{
		0:                 "$0.00",
		1:                 "$0.000000001",
		8_800:             "$0.0000088",
		10_000_000:        "$0.01",
		1_234_567_000:     "$1.234567",
		-1_500_000_000:    "-$1.50",
		1_234_567_000_000: "$1,234.567",
		123_000_000_000:   "$123.00",
		math.MaxInt64:     "$9,223,372,036.854775807",
		math.MinInt64:     "-$9,223,372,036.854775808",
	} {
		if got := tollgate.FormatUSD(nanos); got != want {
			t.Errorf("FormatUSD(%d) = %q, want %q", nanos, got, want)
		}
	}
}
