//! The webhook channel: Standard Webhooks signing (HMAC-SHA256) and the HTTP POST.
//!
//! Headers: `webhook-id` (the notification id, the same on every retry), `webhook-timestamp`
//! (unix seconds of this attempt) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
//! `id.timestamp.body` with the key of the `whsec_` secret).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::NotifyError;

/// `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
}

/// An HTTP client for webhooks (redirects are not followed: a receiver moved is a failure to
/// report, not to chase).
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
}

impl WebhookClient {
    pub fn new(timeout: Duration) -> Result<WebhookClient, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ontrack/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                NotifyError::config("notify.webhook", format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(WebhookClient { http })
    }

    /// One attempt: POST `body` signed for `id` at `timestamp` (unix seconds).
    pub async fn send(
        &self,
        url: &str,
        key: &[u8],
        id: &str,
        timestamp: i64,
        body: Vec<u8>,
    ) -> Result<(), NotifyError> {
        let signature = sign(key, id, timestamp, &body);
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                classify(response.status().as_u16(), retry_after)
            }
            Err(e) if e.is_timeout() => Err(NotifyError::transient("timed out")),
            // Connection refused, DNS, TLS: the receiver may be back later.
            Err(e) => Err(NotifyError::transient(format!("cannot connect: {}", root(&e)))),
        }
    }
}

/// What a webhook response status means for the notification.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Result<(), NotifyError> {
    match status {
        200..=299 => Ok(()),
        410 => Err(NotifyError::Gone { reason: "endpoint gone (HTTP 410): disabled".into() }),
        408 | 429 | 500..=599 => {
            Err(NotifyError::Transient { reason: format!("HTTP {status}"), after: retry_after })
        }
        _ => Err(NotifyError::permanent(format!("HTTP {status}: the receiver refused it"))),
    }
}

/// `Retry-After`: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The innermost cause of an error (reqwest's outer message names only the URL).
fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::secret_key;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signature_matches_the_specifications_example() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn statuses_map_to_what_the_issue_asks() {
        use crate::notify::Retry;
        let retry = |status| classify(status, None).unwrap_err().retry();
        assert!(classify(204, None).is_ok());
        assert_eq!(retry(410), Retry::DisableEndpoint);
        for s in [408, 429, 500, 503] {
            assert_eq!(retry(s), Retry::Later(None), "{s}");
        }
        let after = Some(Duration::from_secs(3));
        assert_eq!(classify(429, after).unwrap_err().retry(), Retry::Later(after));
        for s in [301, 400, 401, 404, 422] {
            assert_eq!(retry(s), Retry::Never, "{s}");
        }
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
