//! A stand-in Kubernetes API server for tests: serves pod and service lists
//! (paginated when asked) and watches of them, records what is posted to
//! it, and can be made to fail the ways a real one does. Plain HTTP/1.1 on
//! loopback, one request per connection, a thread each (a watch holds its
//! connection); just enough of the protocol for kube-rs.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub body: Option<Value>,
}

impl Request {
    /// A LIST (not a watch) of `path`, e.g. `/api/v1/pods`.
    pub fn is_list_of(&self, path: &str) -> bool {
        self.method == "GET" && self.path() == path && !self.target.contains("watch=true")
    }

    pub fn is_watch_of(&self, path: &str) -> bool {
        self.method == "GET" && self.path() == path && self.target.contains("watch=true")
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter's raw value.
    pub fn query(&self, key: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// How every request is answered until the fault is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// A `Status` with this HTTP code (500, 503...).
    Status(u16),
    /// The request is read and never answered; the connection is dropped
    /// once the fault is cleared.
    Hang,
    /// 200 with a body that is not JSON (a truncated one would be taken for
    /// a watch's last, unfinished line and skipped).
    Garbage,
}

struct State {
    pods: Vec<Value>,
    services: Vec<Value>,
    resource_version: u64,
    /// Every change, for watches: (resourceVersion, collection path, type, object).
    changes: Vec<(u64, &'static str, &'static str, Value)>,
    fault: Fault,
    /// Bumped to end the open watches.
    epoch: u64,
    fail_events: bool,
    /// Answer lists whole, whatever `limit` asks (as a server that does
    /// not paginate would).
    ignore_limit: bool,
    /// End every watch as soon as it starts (200, no event): a proxy or
    /// server that cuts long requests.
    close_watches: bool,
}

const PODS: &str = "/api/v1/pods";
const SERVICES: &str = "/api/v1/services";

pub struct FakeApiServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    state: Arc<Mutex<State>>,
}

impl FakeApiServer {
    /// Serves the items of `pods` for pod lists and watches whose field
    /// selector names `node` (none otherwise) and those of `services` for
    /// services; accepts Event POSTs.
    pub fn start(node: &str, pods: Value, services: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let items = |list: Value| list["items"].as_array().cloned().unwrap_or_default();
        let state = Arc::new(Mutex::new(State {
            pods: items(pods),
            services: items(services),
            resource_version: 1000,
            changes: Vec::new(),
            fault: Fault::None,
            epoch: 0,
            fail_events: false,
            ignore_limit: false,
            close_watches: false,
        }));
        let (seen, shared) = (requests.clone(), state.clone());
        let node = node.to_string();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (node, seen, shared) = (node.clone(), seen.clone(), shared.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &node, &shared, &seen);
                });
            }
        });
        Self { url, requests, state }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Bodies of the Events posted so far.
    pub fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.target.contains("/events"))
            .filter_map(|r| r.body)
            .collect()
    }

    /// LIST requests (pages included) of `/api/v1/pods` or `/api/v1/services`.
    pub fn lists(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.is_list_of(path)).collect()
    }

    pub fn watches(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.is_watch_of(path)).collect()
    }

    /// A pod on the node appears (or changes, by name and namespace).
    pub fn apply_pod(&self, pod: Value) {
        self.change(PODS, pod, false);
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let pod = json!({"metadata": {"namespace": namespace, "name": name}});
        self.change(PODS, pod, true);
    }

    pub fn apply_service(&self, svc: Value) {
        self.change(SERVICES, svc, false);
    }

    /// Answers every request this way from now on (`Fault::None` to heal);
    /// open watches end.
    pub fn set_fault(&self, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.fault = fault;
        s.epoch += 1;
    }

    /// Event POSTs get a 500.
    pub fn fail_events(&self, fail: bool) {
        self.state.lock().unwrap().fail_events = fail;
    }

    pub fn ignore_limit(&self, ignore: bool) {
        self.state.lock().unwrap().ignore_limit = ignore;
    }

    /// Watches end as soon as they start, from now on.
    pub fn close_watches_at_once(&self, close: bool) {
        self.state.lock().unwrap().close_watches = close;
    }

    fn change(&self, path: &'static str, mut obj: Value, delete: bool) {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        let rv = s.resource_version;
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        let key = |o: &Value| (o["metadata"]["namespace"].clone(), o["metadata"]["name"].clone());
        let items = if path == PODS { &mut s.pods } else { &mut s.services };
        let existing = items.iter().position(|o| key(o) == key(&obj));
        let kind = match (delete, existing) {
            (true, Some(i)) => {
                obj = items.remove(i);
                obj["metadata"]["resourceVersion"] = rv.to_string().into();
                "DELETED"
            }
            (true, None) => return,
            (false, Some(i)) => {
                items[i] = obj.clone();
                "MODIFIED"
            }
            (false, None) => {
                items.push(obj.clone());
                "ADDED"
            }
        };
        s.changes.push((rv, path, kind, obj));
    }
}

fn serve(stream: TcpStream, node: &str, state: &Mutex<State>, seen: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let req = Request { method: method.clone(), target: target.clone(), body: body.clone() };
    seen.lock().unwrap().push(req.clone());
    let mut stream = stream;

    let fault = state.lock().unwrap().fault;
    match fault {
        Fault::None => {}
        Fault::Status(code) => return reply(&mut stream, code, &status(code)),
        Fault::Hang => {
            while state.lock().unwrap().fault == Fault::Hang {
                thread::sleep(Duration::from_millis(20));
            }
            return Ok(());
        }
        Fault::Garbage => return reply_text(&mut stream, 200, "<html><body>502 from a proxy</body></html>\n"),
    }

    let on_node = target.contains(&format!("spec.nodeName%3D{node}")) || target.contains(&format!("spec.nodeName={node}"));
    let path = req.path();
    match (method.as_str(), path) {
        ("GET", PODS | SERVICES) if req.query("watch") == Some("true") => {
            let since = req.query("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let path = if path == PODS { PODS } else { SERVICES };
            // As a real server, it ends a watch after `timeoutSeconds`.
            let ends = req.query("timeoutSeconds").and_then(|t| t.parse().ok()).map(|t| Instant::now() + Duration::from_secs(t));
            watch(&mut stream, state, path, since, path == SERVICES || on_node, ends)
        }
        ("GET", PODS | SERVICES) => {
            let s = state.lock().unwrap();
            let (kind, items) = if path == PODS {
                ("PodList", if on_node { &s.pods[..] } else { &[][..] })
            } else {
                ("ServiceList", &s.services[..])
            };
            let start: usize = req.query("continue").and_then(|c| c.parse().ok()).unwrap_or(0).min(items.len());
            let limit = req.query("limit").and_then(|l| l.parse::<usize>().ok()).filter(|_| !s.ignore_limit);
            let end = limit.map_or(items.len(), |l| (start + l).min(items.len()));
            let mut metadata = json!({"resourceVersion": s.resource_version.to_string()});
            if end < items.len() {
                metadata["continue"] = end.to_string().into();
            }
            let list = json!({"kind": kind, "apiVersion": "v1", "metadata": metadata, "items": &items[start..end]});
            drop(s);
            reply(&mut stream, 200, &list)
        }
        ("POST", p) if p.starts_with("/api/v1/namespaces/") && p.ends_with("/events") => {
            if state.lock().unwrap().fail_events {
                return reply(&mut stream, 500, &status(500));
            }
            let mut created = body.unwrap_or_default();
            let name = format!("{}x7k2q", created["metadata"]["generateName"].as_str().unwrap_or("event."));
            created["metadata"]["name"] = name.into();
            reply(&mut stream, 201, &created)
        }
        _ => reply(&mut stream, 404, &status(404)),
    }
}

/// Streams the changes after `since` until a fault, its end or the client
/// ends it. While the server hangs, an open watch goes silent (neither
/// data nor its end), as a stalled API server's or proxy's does.
fn watch(stream: &mut TcpStream, state: &Mutex<State>, path: &str, since: u64, visible: bool, ends: Option<Instant>) -> std::io::Result<()> {
    // One request per connection, as every other reply here says.
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    let (epoch, close) = {
        let s = state.lock().unwrap();
        (s.epoch, s.close_watches)
    };
    let mut sent = since;
    while !close {
        let lines: Vec<String> = {
            let s = state.lock().unwrap();
            if s.fault == Fault::Hang {
                drop(s);
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            if s.epoch != epoch || ends.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let new: Vec<String> = s
                .changes
                .iter()
                .filter(|(rv, p, ..)| *rv > sent && *p == path && visible)
                .map(|(_, _, kind, obj)| format!("{}\n", json!({"type": kind, "object": obj})))
                .collect();
            sent = s.resource_version;
            new
        };
        for line in lines {
            write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
        }
        stream.flush()?;
        thread::sleep(Duration::from_millis(20));
    }
    write!(stream, "0\r\n\r\n")?;
    stream.flush()
}

fn status(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("fake API server answers {code}"), "code": code})
}

fn reply(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    reply_text(stream, status, &body.to_string())
}

fn reply_text(stream: &mut TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

/// The recorded API responses shared with tracer-user's unit tests.
pub fn recorded(name: &str) -> Value {
    let path = crate::root().join("tracer-user/src/k8s/testdata").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}
