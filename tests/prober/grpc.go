// The kubelet's gRPC probe (pkg/probe/grpc) as it meets the socket: the
// probe dialer, HTTP/2 with prior knowledge, the client preface and
// SETTINGS, then, once the server's SETTINGS arrive (grpc.WithBlock waits
// for them), one grpc.health.v1.Health/Check call, all within the probe's
// timeout. grpc-go is not in Go's standard library, so the frames are
// written here: literal HPACK fields, no Huffman coding, and only as much
// of the server's answer read as the probe's outcome needs.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8

	flagAck        = 0x1
	flagEndStream  = 0x1
	flagEndHeaders = 0x4

	clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

type frame struct {
	kind, flags byte
	stream      uint32
	payload     []byte
}

func writeFrame(w io.Writer, kind, flags byte, stream uint32, payload []byte) error {
	head := make([]byte, 9, 9+len(payload))
	head[0], head[1], head[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	head[3], head[4] = kind, flags
	binary.BigEndian.PutUint32(head[5:], stream)
	_, err := w.Write(append(head, payload...))
	return err
}

func readFrame(r *bufio.Reader) (frame, error) {
	var head [9]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return frame{}, err
	}
	n := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
	f := frame{kind: head[3], flags: head[4], stream: binary.BigEndian.Uint32(head[5:]) & 0x7fffffff, payload: make([]byte, n)}
	_, err := io.ReadFull(r, f.payload)
	return f, err
}

// hpackLiteral is a header field "without indexing, new name", lengths
// under 127 bytes.
func hpackLiteral(name, value string) []byte {
	b := []byte{0x00, byte(len(name))}
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}

func grpcProbe(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := probeDialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("timeout: failed to connect service %q within %v: %+v", addr, timeout, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	r := bufio.NewReader(conn)

	// The transport: preface, empty SETTINGS, a connection window update.
	window := make([]byte, 4)
	binary.BigEndian.PutUint32(window, 65535*16)
	if _, err := conn.Write([]byte(clientPreface)); err != nil {
		return fmt.Errorf("error: failed to connect service at %q: %+v", addr, err)
	}
	if err := writeFrame(conn, frameSettings, 0, 0, nil); err != nil {
		return fmt.Errorf("error: failed to connect service at %q: %+v", addr, err)
	}
	if err := writeFrame(conn, frameWindowUpdate, 0, 0, window); err != nil {
		return fmt.Errorf("error: failed to connect service at %q: %+v", addr, err)
	}
	for {
		f, err := readFrame(r)
		if err != nil {
			if isTimeout(err) {
				return fmt.Errorf("timeout: failed to connect service %q within %v: context deadline exceeded", addr, timeout)
			}
			return fmt.Errorf("error: failed to connect service at %q: %+v", addr, err)
		}
		if f.kind == frameSettings && f.flags&flagAck == 0 {
			break
		}
	}
	if err := writeFrame(conn, frameSettings, flagAck, 0, nil); err != nil {
		return fmt.Errorf("error: health rpc probe failed: %+v", err)
	}

	// The call: HEADERS, then one DATA frame with the length-prefixed
	// HealthCheckRequest{service: ""} (an empty message).
	var headers []byte
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.health.v1.Health/Check"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"user-agent", "kube-probe/1.30 grpc-go/1.58.3"},
		{"te", "trailers"}, {"grpc-timeout", fmt.Sprintf("%dm", timeout.Milliseconds())},
	} {
		headers = append(headers, hpackLiteral(h[0], h[1])...)
	}
	if err := writeFrame(conn, frameHeaders, flagEndHeaders, 1, headers); err != nil {
		return fmt.Errorf("error: health rpc probe failed: %+v", err)
	}
	if err := writeFrame(conn, frameData, flagEndStream, 1, make([]byte, 5)); err != nil {
		return fmt.Errorf("error: health rpc probe failed: %+v", err)
	}
	var message []byte
	for {
		f, err := readFrame(r)
		if err != nil {
			if isTimeout(err) {
				return fmt.Errorf("timeout: health rpc did not complete within %v", timeout)
			}
			return fmt.Errorf("error: health rpc probe failed: %+v", err)
		}
		if f.stream != 1 {
			continue
		}
		switch f.kind {
		case frameData:
			message = append(message, f.payload...)
		case frameRSTStream:
			return errors.New("error: health rpc probe failed: stream reset by the server")
		}
		if (f.kind == frameHeaders || f.kind == frameData) && f.flags&flagEndStream != 0 {
			break
		}
	}
	_ = writeFrame(conn, frameGoAway, 0, 0, make([]byte, 8))
	// HealthCheckResponse{status: SERVING} is field 1, varint 1, after the
	// 5-byte gRPC message prefix.
	if len(message) >= 7 && message[5] == 0x08 && message[6] == 0x01 {
		return nil
	}
	if len(message) == 0 {
		return errors.New("error: this server does not implement the grpc health protocol (grpc.health.v1.Health)")
	}
	return fmt.Errorf("service unhealthy (responded with %q)", "NOT_SERVING")
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
