package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

// TestParseArgsIDsStartingWithADash: auth_req_ids are base64url and may
// start with '-'; the admin commands take them as ids, not as unknown
// flags, wherever they stand, while real flags and -h still work.
func TestParseArgsIDsStartingWithADash(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     []string
		config  string
		wantErr bool
	}{
		{args: []string{"-GPZwYB5pxzK5yl0P1cZCaf1_75OIrfY"}, pos: []string{"-GPZwYB5pxzK5yl0P1cZCaf1_75OIrfY"}},
		{args: []string{"--config", "c.yaml", "-GPZw", "_x"}, pos: []string{"-GPZw", "_x"}, config: "c.yaml"},
		{args: []string{"-GPZw", "-config=c.yaml"}, pos: []string{"-GPZw"}, config: "c.yaml"},
		{args: []string{"abc", "--config", "c.yaml"}, pos: []string{"abc"}, config: "c.yaml"},
		{args: []string{"--", "-config"}, pos: []string{"-config"}},
		{args: []string{"-h"}, wantErr: true},
		{args: []string{"--config"}, wantErr: true}, // the flag needs its value
	} {
		var config string
		pos, err := (cmdIO{stdout: io.Discard, stderr: io.Discard}).parseArgs("requests cancel", tc.args, func(fs *flag.FlagSet) {
			fs.StringVar(&config, "config", "", "config file")
		})
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (!slices.Equal(pos, tc.pos) || config != tc.config) {
			t.Errorf("%q: positional %q config %q, want %q and %q", tc.args, pos, config, tc.pos, tc.config)
		}
	}
}
