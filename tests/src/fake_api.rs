//! A stand-in Kubernetes API server for tests: serves recorded list
//! responses and records what is posted to it. Plain HTTP/1.1 on loopback,
//! one request per connection; just enough of the protocol for kube-rs.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
};

use serde_json::Value;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub body: Option<Value>,
}

pub struct FakeApiServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeApiServer {
    /// Serves `pods` for pod lists whose field selector names `node`
    /// (an empty PodList otherwise) and `services` for service lists;
    /// accepts Event POSTs.
    pub fn start(node: &str, pods: Value, services: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let node = node.to_string();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &node, &pods, &services, &seen);
            }
        });
        Self { url, requests }
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
}

fn serve(stream: TcpStream, node: &str, pods: &Value, services: &Value, seen: &Mutex<Vec<Request>>) -> std::io::Result<()> {
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
    seen.lock().unwrap().push(Request { method: method.clone(), target: target.clone(), body: body.clone() });

    let path = target.split('?').next().unwrap_or("");
    let (status, reply) = match (method.as_str(), path) {
        ("GET", "/api/v1/pods") => {
            let selector = format!("spec.nodeName%3D{node}");
            if target.contains(&selector) || target.contains(&format!("spec.nodeName={node}")) {
                (200, pods.clone())
            } else {
                (200, serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}))
            }
        }
        ("GET", "/api/v1/services") => (200, services.clone()),
        ("POST", p) if p.starts_with("/api/v1/namespaces/") && p.ends_with("/events") => {
            let mut created = body.unwrap_or_default();
            let name = format!("{}x7k2q", created["metadata"]["generateName"].as_str().unwrap_or("event."));
            created["metadata"]["name"] = name.into();
            (201, created)
        }
        _ => (404, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})),
    };
    let text = reply.to_string();
    let reason = match status { 200 => "OK", 201 => "Created", _ => "Not Found" };
    let mut stream = stream;
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
