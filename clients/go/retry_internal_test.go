package tollgate

import (
	"testing"
	"time"
)

func TestBackoffIsFullJitterDoublingUpToTheCap(t *testing.T) {
	p := RetryPolicy{Attempts: 10, Budget: time.Minute, Backoff: 100 * time.Millisecond, MaxBackoff: 250 * time.Millisecond}
	for n, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 250 * time.Millisecond, 9: 250 * time.Millisecond} {
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := p.backoff(n)
			if d < 0 || d >= ceiling {
				t.Fatalf("backoff(%d) = %v, outside [0, %v)", n, d, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Fatalf("backoff(%d) is not jittered: %d distinct waits in 200", n, len(seen))
		}
	}
	if d := (RetryPolicy{Attempts: 3}).backoff(2); d != 0 {
		t.Fatalf("no backoff configured, yet waited %v", d)
	}
}
