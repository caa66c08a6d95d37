package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonMarshaler is grpc-gateway's protojson marshaler with a stricter
// request decoder: one JSON value per body, nothing after it, and errors
// that say what is wrong and where.
type jsonMarshaler struct {
	*runtime.JSONPb
}

// NewDecoder implements runtime.Marshaler.
func (m jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return bodyDecoder{r: r, opts: m.UnmarshalOptions}
}

// bodyDecoder decodes a whole request body into one message. grpc-gateway
// puts the error text into an InvalidArgument status, so it is written for
// the client.
type bodyDecoder struct {
	r    io.Reader
	opts protojson.UnmarshalOptions
}

// Decode implements runtime.Decoder. An empty body is io.EOF, which the
// generated handlers read as an empty message.
func (d bodyDecoder) Decode(v any) error {
	msg, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("request body cannot be decoded into %T", v)
	}

	data, err := io.ReadAll(d.r)
	if err != nil {
		return fmt.Errorf("request body could not be read")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return io.EOF
	}

	if err := checkSingleJSONValue(data); err != nil {
		return err
	}

	if err := d.opts.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("invalid request body: %s", withoutLibraryPrefix(err))
	}

	return nil
}

// checkSingleJSONValue reports malformed JSON, or data after the first
// value, with the byte offset where the problem starts.
func checkSingleJSONValue(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))

	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &syntaxErr):
			return fmt.Errorf("malformed JSON at byte %d: %w", syntaxErr.Offset, syntaxErr)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("malformed JSON: the body ends at byte %d, inside a value",
				len(data))
		default:
			return errors.New("malformed JSON")
		}
	}

	offset := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("malformed JSON: unexpected data after the value, at byte %d", offset)
	}

	return nil
}

// withoutLibraryPrefix drops the "proto:" protojson puts before its
// messages (followed by a space or, on purpose, a no-break space); the
// rest names the problem and its line and column.
func withoutLibraryPrefix(err error) string {
	msg, found := strings.CutPrefix(err.Error(), "proto:")
	if !found {
		return msg
	}

	return strings.TrimLeft(msg, " \u00a0")
}
