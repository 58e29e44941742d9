//! The built-in diagnoser: the default engine, with no network and the same answer for the
//! same conversation. It recognises what the user asks for by key words (Portuguese and
//! English), runs the one matching call through the [`Toolbox`], and explains the outcome
//! (or, when nothing matches, the session's last actionable failure) with the tool's
//! recommendation, in the user's language.
//!
//! Intents, first match wins: a person → `escalate_to_human`; apply/configure →
//! `autoconfigure`; Meta (token, pixel, CAPI) → `validate_meta_token`; a gateway (Hotmart,
//! Kiwify, Stripe, webhook) → `validate_gateway_credentials`; the page (URL, site, snippet)
//! → `probe_landing_url`; status → `status`; "try again" → the tool of the last failed step;
//! anything else → the last failure explained, or the next step.

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Assistant, Call, CallResult, EngineError, EngineName, Language, NoteStatus, Reply, Toolbox,
    Turn,
};
use crate::tools::ToolName;

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Human,
    Autoconfigure,
    Meta,
    Gateway,
    Landing,
    Status,
    Retry,
    Explain,
}

/// Key words of each intent, in the order they are tried.
const INTENTS: [(Intent, &[&str]); 7] = [
    (
        Intent::Human,
        &[
            "humano",
            "pessoa",
            "atendente",
            "suporte",
            "alguém",
            "alguem",
            "human",
            "person",
            "agent",
            "support",
            "someone",
        ],
    ),
    (
        Intent::Autoconfigure,
        &[
            "autoconfigure",
            "autoconfigurar",
            "configurar",
            "configure",
            "aplicar",
            "apply",
            "ativar",
            "activate",
        ],
    ),
    (
        Intent::Meta,
        &[
            "meta",
            "facebook",
            "token",
            "pixel",
            "capi",
            "conversions",
            "conversões",
        ],
    ),
    (
        Intent::Gateway,
        &[
            "hotmart",
            "kiwify",
            "stripe",
            "gateway",
            "webhook",
            "hottok",
            "pagamento",
            "payment",
            "checkout",
        ],
    ),
    (
        Intent::Landing,
        &[
            "url", "landing", "página", "pagina", "site", "page", "snippet", "script", "tag",
        ],
    ),
    (
        Intent::Status,
        &[
            "status",
            "andamento",
            "progresso",
            "progress",
            "situação",
            "situacao",
        ],
    ),
    (
        Intent::Retry,
        &[
            "de novo",
            "novamente",
            "tente",
            "tentar",
            "again",
            "retry",
            "corrigi",
            "arrumei",
            "fixed",
        ],
    ),
];

impl Intent {
    /// The intent of `message` (lower-cased words and phrases).
    pub fn of(message: &str) -> Intent {
        let lower = message.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        INTENTS
            .iter()
            .find(|(_, keys)| {
                keys.iter().any(|k| {
                    if k.contains(' ') {
                        lower.contains(k)
                    } else {
                        words.contains(k)
                    }
                })
            })
            .map(|(intent, _)| *intent)
            .unwrap_or(Intent::Explain)
    }
}

/// The built-in engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Diagnoser;

#[async_trait]
impl Assistant for Diagnoser {
    fn name(&self) -> EngineName {
        EngineName::Builtin
    }

    async fn reply(&self, turn: &Turn<'_>, tools: &dyn Toolbox) -> Result<Reply, EngineError> {
        let lang = turn.language;
        let status = &turn.memory.status;
        let last_failed_tool = status
            .pointer("/last_failure/tool")
            .and_then(Value::as_str)
            .and_then(|t| ToolName::parse(t).ok());
        let mut intent = Intent::of(turn.message);
        // Settings given without saying what for: validate what they belong to.
        if intent == Intent::Explain || intent == Intent::Retry {
            if turn.given.meta_access_token.is_some() || turn.given.pixel_id.is_some() {
                intent = Intent::Meta;
            } else if turn.given.webhook_secret.is_some() {
                intent = Intent::Gateway;
            } else if turn.given.url.is_some() {
                intent = Intent::Landing;
            }
        }
        let call = match intent {
            Intent::Human => Some(Call::EscalateToHuman),
            Intent::Autoconfigure => Some(Call::Autoconfigure),
            Intent::Meta => Some(Call::Validate(ToolName::ValidateMetaToken)),
            Intent::Gateway => Some(Call::Validate(ToolName::ValidateGatewayCredentials)),
            Intent::Landing => Some(Call::Validate(ToolName::ProbeLandingUrl)),
            Intent::Status => Some(Call::Status),
            Intent::Retry => last_failed_tool.map(Call::Validate),
            Intent::Explain => None,
        };
        let Some(call) = call else {
            return Ok(Reply {
                text: explain_status(status, lang),
                actions: Vec::new(),
            });
        };
        let result = tools.call(call.clone()).await?;
        let mut text = explain(&call, &result, lang);
        if result.detail.get("handed_off") == Some(&Value::Bool(true)) {
            text.push(' ');
            text.push_str(match lang {
                Language::PtBr => "Como já tentamos algumas vezes, chamei uma pessoa da nossa equipe: ela recebe esta conversa e continua daqui.",
                Language::En => "As this has failed several times, I have called a person from our team: they get this conversation and take it from here.",
            });
        }
        // After a success, the next step; after a status, nothing more.
        if result.note.status == NoteStatus::Success
            && !matches!(call, Call::Status | Call::EscalateToHuman)
        {
            let after = tools.call(Call::Status).await?;
            text.push(' ');
            text.push_str(&next_step(&after.detail, lang));
        }
        Ok(Reply {
            text,
            actions: vec![result.note],
        })
    }
}

fn step_name(tool: &str, lang: Language) -> &'static str {
    match (tool, lang) {
        ("validate_meta_token", Language::PtBr) => "O token da Meta",
        ("validate_meta_token", Language::En) => "The Meta token",
        ("validate_gateway_credentials", Language::PtBr) => "O gateway de pagamento",
        ("validate_gateway_credentials", Language::En) => "The payment gateway",
        ("probe_landing_url", Language::PtBr) => "A página de vendas",
        ("probe_landing_url", Language::En) => "The landing page",
        (_, Language::PtBr) => "Essa etapa",
        (_, Language::En) => "That step",
    }
}

/// A tool's recommendation in `lang` (the tools write English).
pub fn recommendation(text: &str, lang: Language) -> String {
    const PT: [(&str, &str); 8] = [
        (
            "generate a new Conversions API token",
            "gere um novo token da API de Conversões no Gerenciador de Eventos > Configurações > API de Conversões",
        ),
        (
            "generate the token from this pixel's own settings",
            "gere o token nas configurações deste mesmo pixel, ou dê ao usuário do sistema acesso ao pixel nas Configurações do Negócio",
        ),
        (
            "the funnelhub tracking snippet is not on the page",
            "coloque na página a tag do funnelhub (um <script> no <head>)",
        ),
        (
            "publish the page",
            "publique a página (agora ela responde com erro)",
        ),
        (
            "check the address and that the site is online",
            "confira o endereço e se o site está no ar (DNS, certificado TLS)",
        ),
        (
            "copy the whole webhook secret",
            "copie o segredo (token) completo das configurações de webhook do gateway",
        ),
        (
            "copy the signing secret of the webhook endpoint",
            "copie o segredo de assinatura do endpoint de webhook (Developers > Webhooks > endpoint > Signing secret), não uma chave de API",
        ),
        (
            "retry later",
            "tente de novo mais tarde; se continuar, veja a página de status do provedor",
        ),
    ];
    match lang {
        Language::En => text.to_owned(),
        Language::PtBr => PT
            .iter()
            .find(|(en, _)| text.starts_with(en))
            .map(|(_, pt)| (*pt).to_owned())
            .unwrap_or_else(|| text.to_owned()),
    }
}

fn explain(call: &Call, result: &CallResult, lang: Language) -> String {
    let note = &result.note;
    let reason = note.reason.clone().unwrap_or_default();
    let advice = result
        .detail
        .get("recommendation")
        .and_then(Value::as_str)
        .map(|r| recommendation(r, lang));
    match (call, note.status, lang) {
        (Call::EscalateToHuman, _, Language::PtBr) => format!(
            "Chamei uma pessoa da nossa equipe: ela recebe o histórico desta conversa e tudo o que já tentamos, e continua daqui. Ticket: {}.",
            result.detail.get("ticket_id").and_then(Value::as_str).unwrap_or("-")
        ),
        (Call::EscalateToHuman, _, Language::En) => format!(
            "I have called a person from our team: they get this conversation and everything we tried, and take it from here. Ticket: {}.",
            result.detail.get("ticket_id").and_then(Value::as_str).unwrap_or("-")
        ),
        (Call::Status, _, _) => explain_status(&result.detail, lang),
        (Call::Autoconfigure, NoteStatus::Success, Language::PtBr) => {
            "Pronto: apliquei a configuração validada à sua conta. Se algo mudar para pior, dá para desfazer (rollback).".into()
        }
        (Call::Autoconfigure, NoteStatus::Success, Language::En) => {
            "Done: the validated settings are applied to your account. If anything gets worse, it can be rolled back.".into()
        }
        (Call::Autoconfigure, _, Language::PtBr) => format!(
            "Ainda não dá para aplicar a configuração: {reason}. {}",
            explain_status(&result.detail, lang)
        ),
        (Call::Autoconfigure, _, Language::En) => format!(
            "The settings cannot be applied yet: {reason}. {}",
            explain_status(&result.detail, lang)
        ),
        (Call::Validate(tool), NoteStatus::Success, Language::PtBr) => {
            format!("{} foi validado com sucesso.", step_name(tool.as_str(), lang))
        }
        (Call::Validate(tool), NoteStatus::Success, Language::En) => {
            format!("{} is validated.", step_name(tool.as_str(), lang))
        }
        (Call::Validate(tool), NoteStatus::NeedsInput, Language::PtBr) => format!(
            "Para validar, preciso de: {reason}. Mande no chat (o segredo fica só com a ferramenta de validação, não é guardado na conversa). {}",
            step_name(tool.as_str(), lang)
        ),
        (Call::Validate(tool), NoteStatus::NeedsInput, Language::En) => format!(
            "To validate it I need: {reason}. Send it here (a secret goes only to the validation tool, never into the conversation). {}",
            step_name(tool.as_str(), lang)
        ),
        (Call::Validate(tool), _, Language::PtBr) => format!(
            "{} falhou: {reason}. O que fazer: {}.",
            step_name(tool.as_str(), lang),
            advice.unwrap_or_else(|| "confira os dados e tente de novo".into())
        ),
        (Call::Validate(tool), _, Language::En) => format!(
            "{} failed: {reason}. What to do: {}.",
            step_name(tool.as_str(), lang),
            advice.unwrap_or_else(|| "check the settings and try again".into())
        ),
    }
}

/// The session in one or two sentences: where it is, the last failure and its fix.
pub fn explain_status(status: &Value, lang: Language) -> String {
    let state = status
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("created");
    // The last failure, while its step is still failed.
    let still_failed = |failure: &Value| {
        failure
            .get("step")
            .and_then(Value::as_str)
            .and_then(|step| status.pointer(&format!("/steps/{step}/status")))
            .and_then(Value::as_str)
            == Some("failed")
    };
    if let Some(failure) = status.get("last_failure").filter(|f| still_failed(f)) {
        if state != "validated" && state != "configured" {
            let tool = failure.get("tool").and_then(Value::as_str).unwrap_or("");
            let reason = failure.get("reason").and_then(Value::as_str).unwrap_or("");
            let advice = failure
                .get("recommendation")
                .and_then(Value::as_str)
                .map(|r| recommendation(r, lang))
                .unwrap_or_default();
            return match lang {
                Language::PtBr => format!(
                    "A última falha foi esta: {} falhou ({reason}). O que fazer: {advice}. Quando corrigir, me diga \"tente de novo\".",
                    step_name(tool, lang)
                ),
                Language::En => format!(
                    "The last failure: {} failed ({reason}). What to do: {advice}. Once fixed, tell me \"try again\".",
                    step_name(tool, lang)
                ),
            };
        }
    }
    next_step(status, lang)
}

/// What to do next from `status`.
fn next_step(status: &Value, lang: Language) -> String {
    let state = status
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("created");
    let pending: Vec<&str> = ["gateway", "meta", "url"]
        .into_iter()
        .filter(|step| {
            status
                .pointer(&format!("/steps/{step}/status"))
                .and_then(Value::as_str)
                != Some("success")
        })
        .collect();
    match (state, lang) {
        ("configured", Language::PtBr) => "A configuração já está aplicada.".into(),
        ("configured", Language::En) => "The settings are applied.".into(),
        ("needs_human", Language::PtBr) => {
            "Uma pessoa da nossa equipe já está com esta sessão.".into()
        }
        ("needs_human", Language::En) => "A person from our team has this session.".into(),
        (_, Language::PtBr) if pending.is_empty() => {
            "Tudo validado: diga \"configurar\" para eu aplicar à sua conta.".into()
        }
        (_, Language::En) if pending.is_empty() => {
            "Everything is validated: say \"configure\" and I apply it to your account.".into()
        }
        (_, Language::PtBr) => format!("Falta validar: {}.", pending.join(", ")),
        (_, Language::En) => format!("Still to validate: {}.", pending.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_in_both_languages() {
        for (message, intent) in [
            ("quero falar com uma pessoa", Intent::Human),
            ("talk to a human", Intent::Human),
            ("valide meu token da Meta", Intent::Meta),
            ("validate my Meta token", Intent::Meta),
            ("por que a Hotmart falhou?", Intent::Gateway),
            ("why did Hotmart fail", Intent::Gateway),
            ("minha página não carrega", Intent::Landing),
            ("pode configurar", Intent::Autoconfigure),
            ("corrigi, tente de novo", Intent::Retry),
            ("qual o status?", Intent::Status),
            ("oi", Intent::Explain),
        ] {
            assert_eq!(Intent::of(message), intent, "{message}");
        }
    }

    #[test]
    fn recommendations_are_translated_when_known() {
        let pt = recommendation(
            "generate a new Conversions API token in Events Manager > Settings > Conversions API",
            Language::PtBr,
        );
        assert!(pt.starts_with("gere um novo token"), "{pt}");
        assert_eq!(
            recommendation("something new", Language::PtBr),
            "something new"
        );
    }
}
