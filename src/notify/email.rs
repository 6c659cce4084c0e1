//! The email channel: SMTP through lettre, STARTTLS required unless configured otherwise.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{EmailConfig, SmtpSecurity};
use super::render::Renderer;
use super::{Notification, NotifyError};

/// The SMTP transport and the sender.
#[derive(Debug, Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `config` must have passed [`super::NotifyConfig::check`] with a non-empty `smtp_host`.
    pub fn new(config: &EmailConfig) -> Result<Mailer, NotifyError> {
        let host = config.smtp_host.as_str();
        let builder = match config.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpSecurity::Plain => {
                Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host))
            }
        }
        .map_err(|e| NotifyError::config("notify.email.smtp_host", e.to_string()))?;
        let mut builder =
            builder.port(config.smtp_port).timeout(Some(Duration::from_millis(config.timeout_ms)));
        if !config.username.is_empty() {
            builder = builder
                .credentials(Credentials::new(config.username.clone(), config.password.clone()));
        }
        let from = (config.from.parse()).map_err(|e: lettre::address::AddressError| {
            NotifyError::config("notify.email.from", e.to_string())
        })?;
        Ok(Mailer { transport: builder.build(), from })
    }

    /// One attempt to send `n` to `address`.
    pub async fn send(
        &self,
        address: &str,
        n: &Notification,
        renderer: &Renderer,
    ) -> Result<(), NotifyError> {
        let to: Mailbox = address
            .parse()
            .map_err(|_| NotifyError::permanent("the advocate's email address is invalid"))?;
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
        let message =
            message.map_err(|e| NotifyError::permanent(format!("cannot build the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                Err(NotifyError::permanent(format!("SMTP refused it permanently: {e}")))
            }
            Err(e) => Err(NotifyError::transient(format!("SMTP: {e}"))),
        }
    }
}
