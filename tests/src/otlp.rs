//! An OTLP/HTTP trace collector stand-in: it accepts `POST /v1/traces`, and decodes what it was
//! sent (protobuf `ExportTraceServiceRequest`s, as the OTLP specification defines them) into
//! spans a test can check by name, trace and parent.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One exported span, the fields the tests read.
#[derive(Debug, Clone)]
pub struct Span {
    /// Its name (`request`, `validate`...).
    pub name: String,
    /// The trace it belongs to (16 bytes).
    pub trace_id: Vec<u8>,
    /// Its id (8 bytes).
    pub span_id: Vec<u8>,
    /// Its parent's id; empty for a root span.
    pub parent_span_id: Vec<u8>,
    /// Its string attributes (the span's fields).
    pub attributes: HashMap<String, String>,
    /// The `service.name` of the resource that exported it.
    pub service: String,
}

/// A running collector stand-in on 127.0.0.1 and a port from the OS.
pub struct Collector {
    server: MockServer,
}

impl Collector {
    /// Starts a collector that answers every export with 200.
    pub async fn start() -> Collector {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/traces"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Collector { server }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.server.uri()
    }

    /// The bodies of every export received, as sent.
    pub async fn bodies(&self) -> Vec<Vec<u8>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/v1/traces")
            .map(|r| r.body)
            .collect()
    }

    /// Every span received, decoded; fails the test on a body that is not an
    /// `ExportTraceServiceRequest` in protobuf (the exporter's `http/protobuf` protocol).
    pub async fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        for body in self.bodies().await {
            let export = ExportTraceServiceRequest::decode(body.as_slice())
                .unwrap_or_else(|e| panic!("not an OTLP protobuf trace export: {e}"));
            for resource_spans in export.resource_spans {
                let service = resource_spans
                    .resource
                    .map(|r| strings(r.attributes))
                    .and_then(|mut a| a.remove("service.name"))
                    .unwrap_or_default();
                for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(Span {
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: strings(span.attributes),
                        service: service.clone(),
                    });
                }
            }
        }
        spans
    }
}

/// The string-valued attributes, by key.
fn strings(attributes: Vec<KeyValue>) -> HashMap<String, String> {
    attributes
        .into_iter()
        .filter_map(|kv| match kv.value?.value? {
            AnyValue::StringValue(s) => Some((kv.key, s)),
            _ => None,
        })
        .collect()
}

/// The spans as an indented tree, children under their parent in name order: `request` with
/// `validate` and `map` under it prints `request\n  map\n  validate\n`. A span whose parent was
/// not exported is printed at the top level, as a root would be.
pub fn tree(spans: &[Span]) -> String {
    fn walk(spans: &[Span], parent: &[u8], depth: usize, out: &mut String) {
        let mut children: Vec<&Span> = spans
            .iter()
            .filter(|s| {
                if parent.is_empty() {
                    s.parent_span_id.is_empty()
                        || !spans.iter().any(|p| p.span_id == s.parent_span_id)
                } else {
                    s.parent_span_id == parent
                }
            })
            .collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        for child in children {
            out.push_str(&"  ".repeat(depth));
            out.push_str(&child.name);
            out.push('\n');
            walk(spans, &child.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, &[], 0, &mut out);
    out
}
