package vagga

import (
	"fmt"
	"math/big"
	"strings"
)

// units are the order-of-magnitude suffixes vagga's config library
// (quire) allows on every number: k, M, G, T are powers of 1000, ki (also
// written Ki), Mi, Gi, Ti powers of 1024.
var units = []struct {
	suffix string
	mult   int64
}{{"ki", 1 << 10}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}

// ParseNumber parses a whole number as vagga.yaml writes them: decimal,
// 0x hexadecimal, 0o octal or 0b binary, "_" between digits, an optional
// sign, and an optional unit (100Mi, 2k, 2 ki).
func ParseNumber(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	neg := strings.HasPrefix(num, "-")
	num = strings.TrimPrefix(strings.TrimPrefix(num, "-"), "+")
	base := 10
	for prefix, b := range map[string]int{"0x": 16, "0o": 8, "0b": 2} {
		if strings.HasPrefix(num, prefix) {
			num, base = num[2:], b
		}
	}
	if num == "" || strings.HasPrefix(num, "_") || strings.HasSuffix(num, "_") || strings.Contains(num, "__") {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	v, ok := new(big.Int).SetString(strings.ReplaceAll(num, "_", ""), base)
	if !ok {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	v.Mul(v, big.NewInt(mult))
	if neg {
		v.Neg(v)
	}
	if !v.IsInt64() || v.Int64() > 1<<62 || v.Int64() < -(1<<62) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v.Int64(), nil
}

// ParseSize parses a byte count: a ParseNumber that is not negative.
func ParseSize(s string) (int64, error) {
	v, err := ParseNumber(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q does not parse", s)
	}
	return v, nil
}
