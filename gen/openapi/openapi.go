// Package openapi embeds the OpenAPI (Swagger 2.0) document that
// protoc-gen-openapiv2 generates from proto/, so the gateway can serve it.
// This file is written by hand; the JSON beside it is generated.
package openapi

import _ "embed"

// Document is the merged OpenAPI document of every Gatehouse REST route.
//
//go:embed gatehouse.swagger.json
var Document []byte
