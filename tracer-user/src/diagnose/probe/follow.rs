//! Following an attempt through the kernel's records: its state changes,
//! its first close, IPVS taking its reply.

use tracer_common::tcp_state::{TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT};

use super::{
    Attempt, Outcome, ProbeCorrelator, merge_tuple,
    phases::{Failure, Phases},
    verdicts::{tuple_text, who},
};
use crate::{
    diagnose::{Answer, Report},
    events::{Event, IpvsConn, TcpClose, TcpInfo},
    network::NetworkFacts,
};

impl<N: NetworkFacts> ProbeCorrelator<N> {
    pub(super) fn on_state(&mut self, ev: &Event, info: &TcpInfo) -> Vec<Report> {
        let Some(a) = self.attempts.get_mut(&info.skaddr) else { return Vec::new() };
        merge_tuple(&mut a.tuple, info);
        match info.newstate {
            TCP_ESTABLISHED if self.settings.follows_close && info.oldstate == TCP_SYN_SENT => {
                a.established_ns = Some(ev.ts_ns);
                Vec::new()
            }
            TCP_ESTABLISHED => {
                let a = self.attempts.remove(&info.skaddr).expect("present");
                self.stats(&a).established += 1;
                self.attempt_record(&a, ev, Outcome::Established).into_iter().collect()
            }
            // Closed, or (after a simultaneous open) left SYN-RECV for a
            // closing state: the kernel stops tracking either way.
            new if new == TCP_CLOSE || info.oldstate == TCP_SYN_RECV => {
                let a = self.attempts.remove(&info.skaddr).expect("present");
                self.close(a, ev, false)
            }
            _ => Vec::new(),
        }
    }

    /// An attempt closed without ever being established.
    pub(super) fn close(&mut self, a: Attempt, ev: &Event, still_pending: bool) -> Vec<Report> {
        let mut out = Vec::new();
        let outcome = if a.diverted {
            Outcome::Diverted // Its verdict went out when IPVS took the SYN-ACK.
        } else if a.reset {
            out.push(self.refused(&a, ev));
            Outcome::Refused
        } else if let Some(svc) = self.inferred_diversion(&a) {
            out.push(self.diverted(&a, ev, &svc.vip, svc.vport, svc.reals.first().copied(), "inferred"));
            Outcome::Diverted
        } else {
            out.push(self.timeout(&a, ev, still_pending));
            Outcome::Timeout
        };
        let stats = self.stats(&a);
        match outcome {
            Outcome::Diverted => stats.diverted += 1,
            Outcome::Refused => stats.refused += 1,
            _ => stats.timeout += 1,
        }
        out.extend(self.attempt_record(&a, ev, outcome));
        out
    }

    /// A connected attempt's first close: its phases decide.
    pub(super) fn on_closed(&mut self, ev: &Event, close: &TcpClose) -> Vec<Report> {
        let Some(mut a) = self.attempts.remove(&close.info.skaddr) else { return Vec::new() };
        merge_tuple(&mut a.tuple, &close.info);
        let phases = Phases::of(&a, ev, close, self.settings.responses_observed);
        let (outcome, verdict) = match phases.failure() {
            None => (Outcome::Established, None),
            Some(Failure::NoResponse) => (Outcome::NoResponse, Some(self.no_response(&a, ev, &phases))),
            Some(Failure::HttpError(status)) => (Outcome::HttpError, Some(self.http_error(&a, ev, &phases, status))),
            Some(Failure::DroppedByPod) => {
                let reset = phases.closed_with == "rst";
                (if reset { Outcome::Reset } else { Outcome::Closed }, Some(self.dropped_by_pod(&a, ev, &phases, reset)))
            }
        };
        let stats = self.stats(&a);
        match outcome {
            Outcome::NoResponse => stats.no_response += 1,
            Outcome::HttpError => stats.http_error += 1,
            Outcome::Reset | Outcome::Closed => stats.dropped_by_pod += 1,
            _ => stats.established += 1,
        }
        let mut out: Vec<Report> = verdict.into_iter().collect();
        let record = if phases.slow() { Some(self.attempt_record_always(&a, ev, outcome)) } else { self.attempt_record(&a, ev, outcome) };
        out.extend(record.map(|r| {
            let mut message = format!("{} {} {}: {}", who(&a), tuple_text(&a), outcome.as_str(), phases.text());
            let mut r = phases.add_to(r);
            let answered_in = phases.response_ms.filter(|_| outcome == Outcome::Established);
            if !phases.slow() {
                r.answer = answered_in.map(|response_ms| Answer { response_ms, slow_because: None });
                return r.message(message);
            }
            let cpu = self.cpu_window(&a, ev);
            let slow_because = cpu.explanation();
            if let Some(limits) = &slow_because {
                message.push_str(&format!("; slow: {limits}"));
            }
            r.answer = answered_in.map(|response_ms| Answer { response_ms, slow_because });
            cpu.add_to(r).message(message)
        }));
        out
    }

    pub(super) fn on_ipvs_conn(&mut self, ev: &Event, conn: &IpvsConn) -> Vec<Report> {
        // The reply of a prober connection: from daddr:dport to saddr:sport.
        let found = self.attempts.values_mut().find(|a| {
            a.tuple.daddr == conn.caddr
                && a.tuple.dport == conn.cport
                && a.tuple.saddr == conn.vaddr
                && a.tuple.sport == conn.vport
        });
        let Some(a) = found else { return Vec::new() };
        if a.diverted {
            return Vec::new();
        }
        a.diverted = true;
        let a = a.clone();
        vec![self.diverted(&a, ev, &conn.vaddr, conn.vport, Some((conn.daddr, conn.dport)), "observed")]
    }
}
