"""The probe-phase scenario's pod: one HTTP-ish server per port, each
failing a probe in one way after the handshake (see env.sh). Run inside
the pod's network namespace; stdlib only."""
import socket
import struct
import sys
import threading
import time

POD_IP = sys.argv[1]
HEALTHY, SILENT, ERROR, LATE, RESET, CLOSE, LOOPBACK, RPFILTER, BACKLOG, GRPC, GRPC_SILENT = (
    int(p) for p in sys.argv[2:13]
)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def reply(status, reason):
    body = reason.encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return bytes([n >> 16 & 255, n >> 8 & 255, n & 255, kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """An HPACK field without indexing, new name, no Huffman coding."""
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


def grpc_health(conn):
    """Just enough HTTP/2 to answer grpc.health.v1.Health/Check: SERVING."""
    recv_exact(conn, len(PREFACE))
    conn.sendall(frame(4, 0, 0))  # SETTINGS
    while True:
        head = recv_exact(conn, 9)
        kind, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big") & 0x7FFFFFFF
        recv_exact(conn, int.from_bytes(head[:3], "big"))
        if kind == 4 and not flags & 1:
            conn.sendall(frame(4, 1, 0))  # SETTINGS ACK
        if kind == 0 and flags & 1 and stream:  # the request's last DATA
            conn.sendall(
                frame(1, 4, stream, b"\x88" + literal(b"content-type", b"application/grpc"))  # :status 200
                + frame(0, 0, stream, b"\x00\x00\x00\x00\x02\x08\x01")  # status: SERVING
                + frame(1, 5, stream, literal(b"grpc-status", b"0"))  # trailers, END_STREAM
            )


def handle(port, conn):
    held = []
    try:
        if port == GRPC:
            grpc_health(conn)
            return
        if port == GRPC_SILENT:
            recv_exact(conn, len(PREFACE))
            held.append(conn)
            time.sleep(30)
            return
        read_request(conn)
        if port in (HEALTHY, LOOPBACK):
            conn.sendall(reply(200, "OK"))
        elif port == ERROR:
            conn.sendall(reply(500, "Internal Server Error"))
        elif port == LATE:
            time.sleep(0.6)
            conn.sendall(reply(200, "OK"))
        elif port == SILENT:
            held.append(conn)
            time.sleep(30)
        elif port == RESET:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # CLOSE: nothing to write.
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def serve(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(port, conn), daemon=True).start()


def never_accepting(addr, port):
    """A listener with backlog 1 that never accepts, and a connection that
    already waits in its queue (the kernel queues backlog + 1)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    waiting = socket.create_connection((addr, port))
    return s, waiting


for port in (HEALTHY, SILENT, ERROR, LATE, RESET, CLOSE, RPFILTER, GRPC, GRPC_SILENT):
    threading.Thread(target=serve, args=(POD_IP, port), daemon=True).start()
threading.Thread(target=serve, args=("127.0.0.1", LOOPBACK), daemon=True).start()
held = never_accepting(POD_IP, BACKLOG)
print("ready", flush=True)
threading.Event().wait()
