//! What a model call cost, as the reference computes it.
//!
//! For a model in the price table (`prices.json`, USD per token, dated; edit it to update
//! prices) or with prices in its model block (`input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! litellm's custom-pricing keys), the total is what litellm's `completion_cost` gives, split
//! into input and output in proportion to the token counts as flatagents does. Any other
//! model — and a priced one whose total is zero — gets flatagents' fallback estimate:
//! `input × 1e-6 + output × 2e-6 + cache_read × 1e-7 + cache_write × 1.25e-6`.

use super::provider::Tokens;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Prices of one model, USD per token.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Price {
    /// Per prompt token.
    pub input: f64,
    /// Per completion token (reasoning tokens included).
    pub output: f64,
    /// Per cached prompt token read; the input price when unset.
    pub cache_read: Option<f64>,
    /// Per prompt token written to the cache; the input price when unset.
    pub cache_write: Option<f64>,
}

static TABLE: OnceLock<HashMap<String, Price>> = OnceLock::new();

/// The price table shipped with the crate, keyed `<provider>/<model>`.
fn table() -> &'static HashMap<String, Price> {
    TABLE.get_or_init(|| {
        let doc: Value = serde_json::from_str(include_str!("prices.json"))
            .expect("prices.json is valid JSON (checked by a unit test)");
        doc.get("models")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), price_of(v.as_object()?)?)))
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn price_of(m: &Map<String, Value>) -> Option<Price> {
    let f = |k: &str| m.get(k).and_then(Value::as_f64);
    Some(Price {
        input: f("input")?,
        output: f("output")?,
        cache_read: f("cache_read"),
        cache_write: f("cache_write"),
    })
}

/// The price of `model` at `provider` from the shipped table (`None` if unknown). Azure
/// deployments of OpenAI models are priced as OpenAI's.
pub fn lookup(provider: &str, model: &str) -> Option<Price> {
    let t = table();
    t.get(&format!("{provider}/{model}")).copied().or_else(|| {
        (provider == "azure")
            .then(|| t.get(&format!("openai/{model}")).copied())
            .flatten()
    })
}

/// Prices set in a model block with litellm's custom-pricing keys.
pub(crate) fn from_model_block(model: &Map<String, Value>) -> Option<Price> {
    let f = |k: &str| model.get(k).and_then(Value::as_f64);
    Some(Price {
        input: f("input_cost_per_token")?,
        output: f("output_cost_per_token")?,
        cache_read: f("cache_read_input_token_cost"),
        cache_write: f("cache_creation_input_token_cost"),
    })
}

/// The `cost` of a result: `{input, output, cache_read, cache_write, total}`.
pub(crate) fn cost(price: Option<Price>, t: &Tokens) -> Value {
    let (i, o, r, w) = (
        t.input as f64,
        t.output as f64,
        t.cache_read as f64,
        t.cache_write as f64,
    );
    if let Some(p) = price {
        let uncached = (i - r - w).max(0.0);
        let total = uncached * p.input
            + r * p.cache_read.unwrap_or(p.input)
            + w * p.cache_write.unwrap_or(p.input)
            + o * p.output;
        if total > 0.0 && i + o > 0.0 {
            let ratio = i / (i + o);
            return json!({"input": total * ratio, "output": total * (1.0 - ratio),
                          "cache_read": 0.0, "cache_write": 0.0, "total": total});
        }
    }
    let (ic, oc, rc, wc) = (i * 0.000001, o * 0.000002, r * 0.0000001, w * 0.00000125);
    json!({"input": ic, "output": oc, "cache_read": rc, "cache_write": wc,
           "total": ic + oc + rc + wc})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_prices_known_models() {
        assert!(table().len() > 100, "{}", table().len());
        let p = lookup("openai", "gpt-4o").unwrap();
        assert_eq!(
            (p.input, p.output, p.cache_read),
            (2.5e-6, 1e-5, Some(1.25e-6))
        );
        assert_eq!(lookup("azure", "gpt-4o"), Some(p));
        assert!(lookup("anthropic", "claude-sonnet-4-5").is_some());
        assert!(lookup("gemini", "gemini-2.5-flash").is_some());
        assert_eq!(lookup("openai", "no-such-model"), None);
    }

    #[test]
    fn known_models_are_split_by_tokens_and_unknown_ones_estimated() {
        let t = Tokens {
            input: 1000,
            output: 500,
            cache_read: 200,
            cache_write: 0,
        };
        let c = cost(lookup("openai", "gpt-4o"), &t);
        // 800 × 2.5e-6 + 200 × 1.25e-6 + 500 × 1e-5
        let total = 800.0 * 2.5e-6 + 200.0 * 1.25e-6 + 500.0 * 1e-5;
        assert!((c["total"].as_f64().unwrap() - total).abs() < 1e-15, "{c}");
        let third = c["input"].as_f64().unwrap() / total;
        assert!((third - 1000.0 / 1500.0).abs() < 1e-12);
        assert_eq!(c["cache_read"], 0.0);
        let est = cost(None, &t);
        let want = 1000.0 * 0.000001 + 500.0 * 0.000002 + 200.0 * 0.0000001;
        assert_eq!(est["total"].as_f64().unwrap(), want);
        // A free model falls back to the estimate, as in the reference.
        let free = Price::default();
        assert_eq!(cost(Some(free), &t), est);
        let block = json!({"input_cost_per_token": 1.0, "output_cost_per_token": 2.0});
        let p = from_model_block(block.as_object().unwrap()).unwrap();
        assert_eq!(
            cost(
                Some(p),
                &Tokens {
                    input: 1,
                    output: 1,
                    ..Tokens::default()
                }
            )["total"],
            3.0
        );
    }
}
