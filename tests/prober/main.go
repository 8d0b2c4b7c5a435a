// A prober built the way the kubelet's pkg/probe/http and pkg/probe/tcp
// build theirs (Go's net/http, keep-alives and compression off, no proxy,
// TLS verification off, SO_LINGER {1, 1 s}, the client timeout set to the
// probe's timeoutSeconds, User-Agent kube-probe/<version>), so that the
// tests see the kubelet's real connection pattern and error texts. The
// binary is named kubelet: its comm is what probe-tracer matches.
//
//	kubelet http URL TIMEOUT     one HTTP GET
//	kubelet tcp HOST:PORT TIMEOUT  connect, then close
//	kubelet grpc HOST:PORT TIMEOUT  one grpc.health.v1.Health/Check (grpc.go)
//
// Prints "success" or the kubelet's failure message; exits 0 or 1.
package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

const maxBody = 10 * 1024

// probeDialer is pkg/probe/dialer_others.go: linger on, 1 s, so that a
// closed probe socket does not sit in TIME_WAIT.
func probeDialer() *net.Dialer {
	return &net.Dialer{
		Control: func(network, address string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 1})
			})
		},
	}
}

func httpProbe(url string, timeout time.Duration) error {
	transport := &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives:  true,
		Proxy:              http.ProxyURL(nil),
		DisableCompression: true,
		DialContext:        probeDialer().DialContext,
	}
	client := &http.Client{Timeout: timeout, Transport: transport}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.30")
	req.Header.Set("Accept", "*/*")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if _, err := io.ReadAll(io.LimitReader(res.Body, maxBody)); err != nil {
		return err
	}
	if res.StatusCode >= http.StatusOK && res.StatusCode < http.StatusBadRequest {
		return nil
	}
	return fmt.Errorf("HTTP probe failed with statuscode: %d", res.StatusCode)
}

func tcpProbe(addr string, timeout time.Duration) error {
	d := probeDialer()
	d.Timeout = timeout
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: kubelet http URL TIMEOUT | kubelet tcp|grpc HOST:PORT TIMEOUT")
		os.Exit(2)
	}
	timeout, err := time.ParseDuration(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "http":
		err = httpProbe(os.Args[2], timeout)
	case "tcp":
		err = tcpProbe(os.Args[2], timeout)
	case "grpc":
		err = grpcProbe(os.Args[2], timeout)
	default:
		err = errors.New("unknown probe type " + os.Args[1])
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("success")
}
