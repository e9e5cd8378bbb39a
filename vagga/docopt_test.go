package vagga

import (
	"errors"
	"reflect"
	"testing"
)

// vaggaDoc is what vagga hands to docopt for a command with options:
// its description (or "vagga NAME"), the options text, then the common
// options of a !Command.
func vaggaDoc(name, options string) string {
	return "vagga " + name + "\n\n" + options + "\nCommon options:\n  -h, --help           This help\n"
}

// The options: of vagga's documentation (docs/commands.rst) and its
// test suite's vagga.yaml files, with the command lines and results
// vagga documents or asserts (tests/generic.bats).
const (
	docsTestOptions = `Usage: vagga test [--redis-port=<n>] [options] [<tests>...]

Options:
  -R, --redis-port <n>  Port to run redis on [default: 6379]
  <tests> ...           Name of the tests to run. By default all
                        tests are run
`
	argsOptions = `Usage: vagga args [options]

Options:
  -F, --first <txt>  First process' text
  --second <txt>     Second process' text
`
	cmdargsOptions = `Usage: vagga cmdargs [options]

Options:
  -v, --verbose ...  Increase pseudo-verbosity
`
	grafanaOptions = `Usage: vagga grafana [options] [--graphite-port=<graphite_port>] [--grafana-port=<grafana_port>]

Options:
  --graphite-port=<graphite_port>  Graphite port to listen on
  --grafana-port=<grafana_port>    Grafana port to listen on
`
)

func TestDocoptVaggaExamples(t *testing.T) {
	for _, tc := range []struct {
		name, options string
		argv          []string
		env           map[string]string
	}{
		{"test", docsTestOptions, []string{"test"}, map[string]string{
			"VAGGAOPT_REDIS_PORT": "6379", "VAGGACLI_REDIS_PORT": "--redis-port 6379",
			"VAGGAOPT_TESTS": "", "VAGGACLI_TESTS": "", "VAGGAOPT_TEST": "true", "VAGGACLI_TEST": "test",
			"VAGGAOPT_HELP": "", "VAGGACLI_HELP": ""}},
		{"test", docsTestOptions, []string{"test", "-R", "7000", "a", "b c"}, map[string]string{
			"VAGGAOPT_REDIS_PORT": "7000", "VAGGACLI_REDIS_PORT": "--redis-port 7000",
			"VAGGAOPT_TESTS": "a b c", "VAGGACLI_TESTS": " a 'b c'"}},
		{"test", docsTestOptions, []string{"test", "--redis-port=1", "x"}, map[string]string{
			"VAGGAOPT_REDIS_PORT": "1", "VAGGAOPT_TESTS": "x"}},
		{"test", docsTestOptions, []string{"test", "--redis=2"}, map[string]string{ // a unique prefix
			"VAGGAOPT_REDIS_PORT": "2"}},
		// tests/generic.bats: "vagga args -Fhello --second "world"".
		{"args", argsOptions, []string{"args", "-Fhello", "--second", "world"}, map[string]string{
			"VAGGAOPT_FIRST": "hello", "VAGGAOPT_SECOND": "world", "VAGGACLI_FIRST": "--first hello"}},
		{"args", argsOptions, []string{"args", "--first=xxx", "--second=yyy"}, map[string]string{
			"VAGGAOPT_FIRST": "xxx", "VAGGAOPT_SECOND": "yyy"}},
		// "vagga cmdargs -vvvv --verbose": Verbosity: 5.
		{"cmdargs", cmdargsOptions, []string{"cmdargs", "-vvvv", "--verbose"}, map[string]string{
			"VAGGAOPT_VERBOSE": "5", "VAGGACLI_VERBOSE": "--verbose --verbose --verbose --verbose --verbose"}},
		{"cmdargs", cmdargsOptions, []string{"cmdargs"}, map[string]string{"VAGGAOPT_VERBOSE": "", "VAGGACLI_VERBOSE": ""}},
		{"grafana", grafanaOptions, []string{"grafana", "--grafana-port", "3000"}, map[string]string{
			"VAGGAOPT_GRAFANA_PORT": "3000", "VAGGAOPT_GRAPHITE_PORT": "", "VAGGACLI_GRAPHITE_PORT": ""}},
	} {
		d, err := ParseDocopt(vaggaDoc(tc.name, tc.options))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		values, err := d.Parse(tc.argv)
		if err != nil {
			t.Errorf("%v: %v", tc.argv, err)
			continue
		}
		env := OptionEnv(values)
		for k, want := range tc.env {
			if got, ok := env[k]; !ok || got != want {
				t.Errorf("%v: %s = %q (set %v), want %q", tc.argv, k, got, ok, want)
			}
		}
	}
}

// TestDocoptRefuses: what tests/generic.bats has vagga refuse (status
// 121 with the usage), and --help.
func TestDocoptRefuses(t *testing.T) {
	args, err := ParseDocopt(vaggaDoc("args", argsOptions))
	if err != nil {
		t.Fatal(err)
	}
	cmdargs, err := ParseDocopt(vaggaDoc("cmdargs", cmdargsOptions))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    *Docopt
		argv []string
		want string
	}{
		{args, []string{"args", "--bad-arg"}, "Unknown flag: '--bad-arg'"},
		{cmdargs, []string{"cmdargs", "--bad-arg"}, "Unknown flag: '--bad-arg'"},
		{args, []string{"args", "extra-arg"}, "Invalid arguments."},
		{cmdargs, []string{"cmdargs", "extra-arg"}, "Invalid arguments."},
		{args, []string{"args", "--first"}, "--first requires argument"},
	} {
		_, err := tc.d.Parse(tc.argv)
		var de *DocoptError
		if !errors.As(err, &de) || de.Msg != tc.want {
			t.Errorf("%v: %v, want %q", tc.argv, err, tc.want)
		}
	}
	if args.Usage != "Usage: vagga args [options]" {
		t.Errorf("usage %q", args.Usage)
	}
	for _, h := range []string{"--help", "-h"} {
		if _, err := cmdargs.Parse([]string{"cmdargs", h}); !errors.Is(err, ErrDocoptHelp) {
			t.Errorf("%s: %v", h, err)
		}
	}
}

func TestDocoptPatterns(t *testing.T) {
	d, err := ParseDocopt(`Usage:
  prog ship new <name>...
  prog ship <name> move <x> <y> [--speed=<kn>]
  prog mine (set|remove) <x> <y> [--moored|--drifting]
  prog -v...

Options:
  --speed=<kn>  Speed in knots [default: 10].
  --moored      Moored (anchored) mine.
  --drifting    Drifting mine.
  -v            Verbose.
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		want map[string]any
	}{
		{[]string{"ship", "new", "a", "b"}, map[string]any{"ship": true, "new": true, "<name>": []string{"a", "b"}, "--speed": "10"}},
		{[]string{"ship", "x", "move", "1", "2", "--speed", "15"}, map[string]any{"move": true, "<x>": "1", "<y>": "2", "--speed": "15", "<name>": []string{"x"}}},
		{[]string{"mine", "remove", "1", "2", "--drifting"}, map[string]any{"remove": true, "set": false, "--drifting": true, "--moored": false}},
		{[]string{"-vvv"}, map[string]any{"-v": 3, "ship": false}},
	} {
		got, err := d.Parse(tc.argv)
		if err != nil {
			t.Errorf("%v: %v", tc.argv, err)
			continue
		}
		for k, want := range tc.want {
			if !reflect.DeepEqual(got[k], want) {
				t.Errorf("%v: %s = %#v, want %#v", tc.argv, k, got[k], want)
			}
		}
	}
	if _, err := d.Parse([]string{"mine", "set", "1"}); err == nil {
		t.Error("mine set 1 (no <y>) parsed")
	}
	for _, bad := range []string{"no usage here", "Usage: prog (a", "usage: a\nusage: b"} {
		if _, err := ParseDocopt(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
