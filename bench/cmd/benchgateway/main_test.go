package main

import (
	"slices"
	"testing"
)

func TestParseLayers(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "bare", in: "", want: nil},
		{name: "edge alone", in: "edge", want: []string{"edge"}},
		{name: "a layer implies the edge", in: "jwt", want: []string{"edge", "jwt"}},
		{name: "several, repeated", in: "mtls, jwt,mtls", want: []string{"edge", "mtls", "jwt"}},
		{name: "all", in: "all", want: allLayers},
		{name: "unknown", in: "jwt,cache", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLayers(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseLayers(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseLayers(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
