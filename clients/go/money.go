package tollgate

import (
	"strconv"
	"strings"
)

// NanosPerUSD is the number of nano-dollars in one US dollar; every ...Nanos figure is in these units.
const NanosPerUSD = 1_000_000_000

// FormatUSD renders an amount of nano-dollars as dollars, e.g. 1_234_567_000 → "$1.234567".
//
// Integer arithmetic only, so no digit is lost to float rounding: sub-cent
// amounts (most single LLM calls) keep every significant digit, and at least
// two decimals are always shown. Whole dollars are grouped by thousands with
// commas, as the Python and Node.js clients render them.
func FormatUSD(nanos int64) string {
	sign := ""
	abs := uint64(nanos)
	if nanos < 0 {
		sign = "-"
		abs = -abs // two's complement: exact for math.MinInt64 too
	}
	decimals := strings.TrimRight(strconv.FormatUint(abs%NanosPerUSD+NanosPerUSD, 10)[1:], "0")
	for len(decimals) < 2 {
		decimals += "0"
	}
	return sign + "$" + thousands(strconv.FormatUint(abs/NanosPerUSD, 10)) + "." + decimals
}

// thousands puts a comma between each group of three digits, from the right.
func thousands(digits string) string {
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}
