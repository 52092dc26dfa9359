//! `data.hooks` resolution by name (`hooks-adapters-cli.md` §2).

use super::{CompositeHooks, LoggingHooks, MachineHooks, MetricsHooks, args_of};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `args` of a hooks reference (`{name: webhook, args: {endpoint: …}}`).
pub type HookArgs = Map<String, Value>;

type Factory = Arc<dyn Fn(&HookArgs) -> Result<Arc<dyn MachineHooks>, String> + Send + Sync>;

/// A `data.hooks` reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HooksError {
    /// No factory is registered under this name.
    #[error("no hooks registered for name `{name}`; registered: [{registered}]")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },
    /// The reference is not a string, a `{name, args}` map or a list of those.
    #[error("invalid hooks reference: {0}")]
    InvalidRef(String),
    /// The factory refused its arguments.
    #[error("hooks `{name}`: {message}")]
    Factory {
        /// The name resolved.
        name: String,
        /// Why the factory failed.
        message: String,
    },
}

/// Hooks factories by name. Starts with `logging` and `metrics` registered (the reference
/// starts empty; see `docs/compatibility.md`).
#[derive(Clone)]
pub struct HooksRegistry {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for HooksRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl Default for HooksRegistry {
    fn default() -> Self {
        HooksRegistry::builtin()
    }
}

impl HooksRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        HooksRegistry {
            factories: BTreeMap::new(),
        }
    }

    /// The built-in names: `logging` and `metrics`.
    pub fn builtin() -> Self {
        let mut r = HooksRegistry::empty();
        r.register("logging", |_| Ok(Arc::new(LoggingHooks)));
        r.register("metrics", |_| Ok(Arc::new(MetricsHooks::new())));
        r
    }

    /// Registers `factory` under `name`; a later registration of the same name wins.
    pub fn register<F>(&mut self, name: impl Into<String>, factory: F)
    where
        F: Fn(&HookArgs) -> Result<Arc<dyn MachineHooks>, String> + Send + Sync + 'static,
    {
        self.factories.insert(name.into(), Arc::new(factory));
    }

    /// Whether `name` is registered.
    pub fn has(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Resolves a `data.hooks` value: `"name"`, `{name, args?}`, or a list of those (chained as
    /// [`CompositeHooks`]).
    pub fn resolve(&self, reference: &Value) -> Result<Arc<dyn MachineHooks>, HooksError> {
        match reference {
            Value::String(name) => self.build(name, &Map::new()),
            Value::Object(entry) => {
                let name = entry.get("name").and_then(Value::as_str).ok_or_else(|| {
                    HooksError::InvalidRef("a hooks map needs a string `name`".into())
                })?;
                self.build(name, &args_of(entry))
            }
            Value::Array(items) => {
                let hooks = items
                    .iter()
                    .map(|item| match item {
                        Value::Array(_) => Err(HooksError::InvalidRef(
                            "a hooks list cannot contain a list".into(),
                        )),
                        other => self.resolve(other),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Arc::new(CompositeHooks::new(hooks)))
            }
            other => Err(HooksError::InvalidRef(format!(
                "expected a name, a {{name, args}} map or a list, found {other}"
            ))),
        }
    }

    fn build(&self, name: &str, args: &HookArgs) -> Result<Arc<dyn MachineHooks>, HooksError> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| HooksError::UnknownName {
                name: name.to_string(),
                registered: self
                    .factories
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        factory(args).map_err(|message| HooksError::Factory {
            name: name.to_string(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn resolves_names_maps_and_lists() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut r = HooksRegistry::builtin();
        let seen = calls.clone();
        r.register("counting", move |args| {
            seen.fetch_add(args.len() + 1, Ordering::SeqCst);
            Ok(Arc::new(super::super::NoHooks))
        });
        r.resolve(&json!("counting")).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        r.resolve(&json!({"name": "counting", "args": {"a": 1, "b": 2}}))
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        r.resolve(&json!(["logging", {"name": "counting"}]))
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn unknown_names_list_what_is_registered() {
        let err = HooksRegistry::builtin()
            .resolve(&json!("webhook"))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "no hooks registered for name `webhook`; registered: [logging, metrics]"
        );
    }

    #[test]
    fn bad_references_are_errors() {
        let r = HooksRegistry::builtin();
        assert!(matches!(
            r.resolve(&json!(3)),
            Err(HooksError::InvalidRef(_))
        ));
        assert!(matches!(
            r.resolve(&json!({"file": "x.py"})),
            Err(HooksError::InvalidRef(_))
        ));
        let mut r = HooksRegistry::empty();
        r.register("strict", |_| Err("needs `endpoint`".into()));
        assert_eq!(
            r.resolve(&json!("strict")).err().unwrap().to_string(),
            "hooks `strict`: needs `endpoint`"
        );
    }
}
