//! Spin application variables: declared in `[variables]`, given values by
//! `--variable name=value` (highest), `SPIN_VARIABLE_<NAME>` environment
//! variables, then the declared default; exposed to a component through the
//! `{{ name }}` templates of its `[component.<id>.variables]` table.
//!
//! Everything is resolved once at startup, as the values cannot change while
//! the host runs; a required variable without a value stops the start.

use std::collections::BTreeMap;

use super::manifest::VariableDecl;

/// Why variables could not be resolved at startup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariablesError {
    #[error(
        "required variable {name:?} has no value: pass `--variable {name}=<value>` or set the {env} environment variable"
    )]
    MissingRequired { name: String, env: String },
    #[error(
        "--variable {name}: the manifest declares no variable {name:?} (declared: {declared})"
    )]
    UnknownOverride { name: String, declared: String },
    #[error("invalid variable name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("component {component:?} variable {key:?}: {reason}")]
    InvalidTemplate {
        component: String,
        key: String,
        reason: String,
    },
}

/// The name of the environment variable that sets application variable `name`.
pub fn env_var_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Checks a variable name as Spin does: lower-case ASCII letters, digits and
/// single underscores, starting with a letter and not ending with `_`, so every
/// name maps to one environment variable.
pub fn validate_name(name: &str) -> Result<(), String> {
    let Some(first) = name.bytes().next() else {
        return Err("must not be empty".into());
    };
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "invalid character {c:?}; names may contain only lower-case letters, digits and underscores"
        ));
    }
    if !first.is_ascii_lowercase() {
        return Err("must start with a lower-case letter".into());
    }
    if name.ends_with('_') {
        return Err("must end with a letter or digit".into());
    }
    if name.contains("__") {
        return Err("must not contain two underscores in a row".into());
    }
    Ok(())
}

/// Resolves the application variables, then each component's templates.
///
/// `env` looks up a process environment variable; pass `|_| None` to ignore
/// the environment. Returns component id -> key -> value.
pub fn resolve<'a>(
    declared: &BTreeMap<String, VariableDecl>,
    overrides: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
    components: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, VariablesError> {
    let values = app_values(declared, overrides, env)?;
    resolve_components(&values, components)
}

/// The value of every application variable: `--variable`, then
/// `SPIN_VARIABLE_<NAME>`, then the declared default.
pub fn app_values(
    declared: &BTreeMap<String, VariableDecl>,
    overrides: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, VariablesError> {
    for name in overrides.keys() {
        if !declared.contains_key(name) {
            return Err(VariablesError::UnknownOverride {
                name: name.clone(),
                declared: declared.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
    }

    let mut values = BTreeMap::new();
    for (name, decl) in declared {
        validate_name(name).map_err(|reason| VariablesError::InvalidName {
            name: name.clone(),
            reason,
        })?;
        let env_name = env_var_name(name);
        let value = overrides
            .get(name)
            .cloned()
            .or_else(|| env(&env_name))
            .or_else(|| decl.default.clone())
            .ok_or_else(|| VariablesError::MissingRequired {
                name: name.clone(),
                env: env_name,
            })?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

/// Each component's `[component.<id>.variables]` with its templates filled in.
pub fn resolve_components<'a>(
    values: &BTreeMap<String, String>,
    components: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, VariablesError> {
    let mut resolved = BTreeMap::new();
    for (component, templates) in components {
        let mut out = BTreeMap::new();
        for (key, template) in templates {
            let invalid = |reason: String| VariablesError::InvalidTemplate {
                component: component.to_string(),
                key: key.clone(),
                reason,
            };
            validate_name(key).map_err(|r| invalid(format!("invalid key: {r}")))?;
            out.insert(key.clone(), render(template, values).map_err(invalid)?);
        }
        resolved.insert(component.to_string(), out);
    }
    Ok(resolved)
}

/// Expands `{{ name }}` expressions (whitespace inside the braces ignored)
/// with application variable values.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!("unmatched '{{{{' in {template:?}"));
        };
        let name = after[..end].trim();
        let value = values
            .get(name)
            .ok_or_else(|| format!("{template:?} refers to undeclared variable {name:?}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_owned),
            required: default.is_none(),
            secret: false,
        }
    }

    fn declared() -> BTreeMap<String, VariableDecl> {
        BTreeMap::from([
            ("admin_key_sha256".to_string(), decl(None)),
            ("cache_ttl_s".to_string(), decl(Some("30"))),
        ])
    }

    fn templates() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "admin_key_sha256".to_string(),
                "{{admin_key_sha256}}".to_string(),
            ),
            ("ttl".to_string(), "ttl={{ cache_ttl_s }}s".to_string()),
            ("fixed".to_string(), "literal".to_string()),
        ])
    }

    fn run(
        overrides: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Result<BTreeMap<String, String>, VariablesError> {
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let t = templates();
        resolve(
            &declared(),
            &overrides,
            |k| env.get(k).cloned(),
            [("api", &t)],
        )
        .map(|mut m| m.remove("api").unwrap())
    }

    #[test]
    fn precedence_is_flag_then_env_then_default() {
        let v = run(&[("admin_key_sha256", "flag")], &[]).unwrap();
        assert_eq!(v["admin_key_sha256"], "flag");
        assert_eq!(v["ttl"], "ttl=30s");
        assert_eq!(v["fixed"], "literal");

        let v = run(
            &[("admin_key_sha256", "flag")],
            &[
                ("SPIN_VARIABLE_ADMIN_KEY_SHA256", "env"),
                ("SPIN_VARIABLE_CACHE_TTL_S", "5"),
            ],
        )
        .unwrap();
        assert_eq!(v["admin_key_sha256"], "flag");
        assert_eq!(v["ttl"], "ttl=5s");

        let v = run(&[], &[("SPIN_VARIABLE_ADMIN_KEY_SHA256", "env")]).unwrap();
        assert_eq!(v["admin_key_sha256"], "env");
    }

    #[test]
    fn missing_required_names_the_variable_and_how_to_set_it() {
        let err = run(&[], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"admin_key_sha256\""), "{msg}");
        assert!(msg.contains("--variable admin_key_sha256="), "{msg}");
        assert!(msg.contains("SPIN_VARIABLE_ADMIN_KEY_SHA256"), "{msg}");
    }

    #[test]
    fn unknown_override_is_refused() {
        let err = run(&[("admin_key_sha256", "x"), ("admin_kye", "y")], &[]).unwrap_err();
        assert!(
            matches!(err, VariablesError::UnknownOverride { ref name, .. } if name == "admin_kye")
        );
        assert!(err.to_string().contains("admin_key_sha256, cache_ttl_s"));
    }

    #[test]
    fn templates_must_name_declared_variables_and_close() {
        let declared = declared();
        for (template, needle) in [
            ("{{ nope }}", "undeclared variable \"nope\""),
            ("x {{ cache_ttl_s", "unmatched"),
        ] {
            let t = BTreeMap::from([("k".to_string(), template.to_string())]);
            let err = resolve(
                &declared,
                &BTreeMap::from([("admin_key_sha256".into(), "a".into())]),
                |_| None,
                [("api", &t)],
            )
            .unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn names_follow_spin_rules() {
        for good in ["a", "abc", "a1b2", "a_1", "admin_key_sha256"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "aX", "1bc", "_x", "x.y", "x_", "a__b", "x-y"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
