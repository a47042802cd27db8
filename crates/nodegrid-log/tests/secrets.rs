//! No secret in `Debug`, `Display`, console reports or errors (issue 17, item 4): every
//! configuration type is formatted with a known secret and searched for it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::{audit_targets, WebhookTarget};
use nodegrid_log::{
    AuditEntry, ConsoleMode, ConsoleTarget, Identity, LoggingConfig, Registry, Stream,
    WebhookConfig,
};

const SECRET: &str = "s3cr3t-webhook-t0ken";

fn hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
}

#[tokio::test]
async fn no_secret_in_debug_display_reports_or_errors() {
    quiet();
    let token = format!("Bearer {SECRET}");
    let r = Receiver::start().await;
    r.set_mode(403);
    let b = WebhookConfig::builder("s", r.url("/"))
        .auth_token(&token)
        .max_retry(1)
        .retry_interval(Duration::from_millis(10));
    hidden("WebhookConfigBuilder Debug", &format!("{b:?}"));
    let cfg = b.build().expect("cfg");
    hidden("WebhookConfig Debug", &format!("{cfg:?}"));
    hidden("WebhookConfig::redacted", &cfg.redacted());
    let with_proxy = WebhookConfig::builder("p", "http://127.0.0.1:9/")
        .proxy(format!("http://user:{SECRET}@127.0.0.1:3128"));
    hidden("builder Debug (proxy)", &format!("{with_proxy:?}"));
    let with_proxy = with_proxy.build().expect("cfg");
    hidden("WebhookConfig Debug (proxy)", &format!("{with_proxy:?}"));
    let e = WebhookConfig::builder("p", "http://127.0.0.1:9/")
        .proxy(format!("https://user:{SECRET}@127.0.0.1:3128"))
        .build()
        .expect_err("https proxy");
    hidden("proxy ConfigError", &format!("{e} {e:?}"));
    assert!(format!("{cfg:?}").contains("auth_token: \"<redacted>\""));

    let vars = |extra: (&str, &str)| {
        [
            ("NODEGRID_AUDIT_WEBHOOK_ENABLE", "on"),
            ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT", "http://127.0.0.1:9/"),
            ("NODEGRID_AUDIT_WEBHOOK_AUTH_TOKEN", token.as_str()),
            extra,
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    };
    let lc = LoggingConfig::from_vars("NODEGRID", vars(("X", "y"))).expect("valid");
    hidden("LoggingConfig Debug", &format!("{lc:?}"));
    let e = LoggingConfig::from_vars("NODEGRID", vars(("NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE", "x")))
        .expect_err("bad batch size");
    hidden("ConfigError", &format!("{e} {e:?}"));

    // A token that is not a valid header value: the start error does not echo it.
    let bad = WebhookConfig::builder("s", r.url("/"))
        .auth_token(format!("{SECRET}\n"))
        .build()
        .expect("cfg");
    let (c, _) = ConsoleTarget::capture(ConsoleMode::Json);
    let e = WebhookTarget::start(Stream::Audit, bad, &Identity::default(), Arc::new(c))
        .expect_err("invalid header value");
    hidden("start error", &format!("{e} {e:?}"));

    // A running target whose endpoint refuses the token (403): reports, stats, Debug.
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(Stream::Audit, vec![cfg])
        .expect("audit");
    reg.audit().log(AuditEntry::new());
    let t = audit_targets(&reg)[0].clone();
    eventually("given up", || t.stats().failed == 1).await;
    assert_eq!(
        r.state.arrivals.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    hidden("console reports", &cap.contents());
    assert!(cap
        .contents()
        .contains("403 Forbidden: check the auth_token"));
    hidden("Registry Debug", &format!("{reg:?}"));
    let stats = reg.stats();
    hidden("stats Debug", &format!("{stats:?}"));
    hidden(
        "stats JSON",
        &serde_json::to_string(&stats).expect("serializable"),
    );
    let _ = reg.shutdown(Duration::from_millis(200)).await;
}
