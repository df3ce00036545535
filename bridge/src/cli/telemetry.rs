//! Logs to stderr, and with the `otlp` feature spans to an OTLP/HTTP collector.

use tracing_subscriber::EnvFilter;

/// How log lines are written: `STSBRIDGE_LOG_FORMAT=json` for one JSON object per line, else text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn from_env() -> LogFormat {
        match std::env::var("STSBRIDGE_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("text") | Err(_) => LogFormat::Text,
            Ok(other) => {
                eprintln!(
                    "warning: STSBRIDGE_LOG_FORMAT={other:?} is neither json nor text; logging text"
                );
                LogFormat::Text
            }
        }
    }
}

/// Logs to stderr (filter in `STSBRIDGE_LOG`; `STSBRIDGE_LOG_FORMAT=json` for JSON lines, each with
/// the fields of the span it happened in: `request_id`, and `trace_id` while spans are exported);
/// with the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans also go to that OTLP/HTTP
/// collector. The returned guard flushes the exporter when dropped.
pub(super) fn init_logging() -> Option<otlp::Guard> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_env("STSBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match LogFormat::from_env() {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        // {"timestamp","level","message",...fields,"span":{"name","request_id",...},"spans":[...]}
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    // Each layer has its own filter: the log lines follow STSBRIDGE_LOG, while an OTLP collector
    // also gets the exchange's step spans (validate, map, render, upstream), which are at debug
    // level so that without a collector they cost nothing on the hot path.
    let (otel, guard) = otlp::layer();
    let otel = otel.map(|layer| {
        tracing_subscriber::Layer::with_filter(layer, EnvFilter::new("info,stsbridge=debug"))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    guard
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetryLayer;

    /// Flushes and stops the exporter on drop.
    pub struct Guard(SdkTracerProvider);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.shutdown();
        }
    }

    /// The OpenTelemetry layer, when `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.
    pub fn layer<S>() -> (Option<OpenTelemetryLayer<S, SdkTracer>>, Option<Guard>)
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, None);
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: OTLP export disabled: {e}");
                return (None, None);
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("stsbridge")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("stsbridge");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Some(Guard(provider)),
        )
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    /// Nothing to flush without the `otlp` feature.
    pub struct Guard;

    /// No OpenTelemetry layer without the `otlp` feature.
    pub fn layer() -> (Option<tracing_subscriber::layer::Identity>, Option<Guard>) {
        (None, None)
    }
}
