//! The email channel: SMTP through lettre, STARTTLS required unless configured otherwise.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Notification;
use super::config::{EmailConfig, SmtpSecurity};
use super::outbox::Attempt;
use super::render::Renderer;

/// The SMTP transport and the sender.
#[derive(Debug, Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `config` must have passed [`super::NotifyConfig::check`] with a non-empty `smtp_host`.
    pub fn new(config: &EmailConfig) -> Result<Mailer, String> {
        let host = config.smtp_host.as_str();
        let builder = match config.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpSecurity::Plain => {
                Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host))
            }
        }
        .map_err(|e| format!("notify.email.smtp_host: {e}"))?;
        let mut builder =
            builder.port(config.smtp_port).timeout(Some(Duration::from_millis(config.timeout_ms)));
        if !config.username.is_empty() {
            builder = builder
                .credentials(Credentials::new(config.username.clone(), config.password.clone()));
        }
        let from = config.from.parse().map_err(|e| format!("notify.email.from: {e}"))?;
        Ok(Mailer { transport: builder.build(), from })
    }

    /// One attempt to send `n` to `address`.
    pub async fn send(&self, address: &str, n: &Notification, renderer: &Renderer) -> Attempt {
        let to: Mailbox = match address.parse() {
            Ok(to) => to,
            Err(_) => {
                return Attempt::Failed {
                    reason: "the advocate's email address is invalid".into(),
                };
            }
        };
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder().header(ContentType::TEXT_PLAIN).body(renderer.text(n)),
            )
            .singlepart(
                SinglePart::builder().header(ContentType::TEXT_HTML).body(renderer.html(n)),
            );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(renderer.subject(n))
            // The same Message-ID on every retry lets mail systems drop repeats.
            .message_id(Some(format!("<{}@ontrack>", n.id)))
            .multipart(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => return Attempt::Failed { reason: format!("cannot build the email: {e}") },
        };
        match self.transport.send(message).await {
            Ok(_) => Attempt::Delivered,
            Err(e) if e.is_permanent() => {
                Attempt::Failed { reason: format!("SMTP refused it permanently: {e}") }
            }
            Err(e) => Attempt::Retry { reason: format!("SMTP: {e}"), after: None },
        }
    }
}
