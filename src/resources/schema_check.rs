//! The structural part of the CRD schema (types, required fields, unknown
//! fields, enums, bounds, patterns, formats), checked without an API server,
//! so `credshift plan/apply` reject what `kubectl apply` would. The CEL rules
//! are mirrored by [`crate::engine::validate`].

use serde_json::Value;

/// One violation: the field path (`spec.batchSize`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// Checks `value` (a whole object: apiVersion, kind, metadata, spec) against
/// the `openAPIV3Schema` of `crd`. Only `spec` and `metadata.name` are checked;
/// `status` is the controller's.
pub fn check(crd: &Value, value: &Value) -> Vec<Violation> {
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = Vec::new();
    match value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
    {
        Some(name) if crate::names::Name::parse(name).is_ok() || is_dns_subdomain(name) => {}
        Some(_) => out.push(Violation {
            path: "metadata.name".into(),
            message: "must be a lower-case DNS subdomain (a-z, 0-9, '-', '.')".into(),
        }),
        None => out.push(Violation {
            path: "metadata.name".into(),
            message: "Required value".into(),
        }),
    }
    match value.get("spec") {
        Some(spec) => walk(&schema["properties"]["spec"], spec, "spec", &mut out),
        None => out.push(Violation {
            path: "spec".into(),
            message: "Required value".into(),
        }),
    }
    out
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            crate::names::Name::parse(label).is_ok() || label.chars().all(|c| c.is_ascii_digit())
        })
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let mut fail = |message: String| {
        out.push(Violation {
            path: path.to_owned(),
            message,
        })
    };
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let type_ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        fail(format!("Invalid value: must be of type {ty}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        fail(format!(
            "Unsupported value: {value}: supported values: {}",
            names.join(", ")
        ));
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                fail(format!(
                    "Invalid value: {n}: should be greater than or equal to {min}"
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                fail(format!(
                    "Invalid value: {n}: should be less than or equal to {max}"
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                fail(format!(
                    "Invalid value: should be at least {min} chars long"
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                fail(format!("Too long: may not be more than {max} bytes"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        fail(format!("Invalid value: {s:?}: should match '{pattern}'"))
                    }
                    _ => {}
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && s.parse::<jiff::Timestamp>().is_err()
            {
                fail(format!(
                    "Invalid value: {s:?}: must be an RFC 3339 date-time with offset"
                ));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                fail(format!(
                    "Invalid value: {}: should have at least {min} items",
                    items.len()
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                fail(format!(
                    "Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            let set = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (i, item) in items.iter().enumerate() {
                let duplicate = items[..i].iter().any(|earlier| match set {
                    Some("set") => earlier == item,
                    Some("map") => {
                        !keys.is_empty() && keys.iter().all(|k| earlier.get(k) == item.get(k))
                    }
                    _ => false,
                });
                if duplicate {
                    out.push(Violation {
                        path: format!("{path}[{i}]"),
                        message: "Duplicate value".into(),
                    });
                }
                walk(&schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        out.push(Violation {
                            path: format!("{path}.{r}"),
                            message: "Required value".into(),
                        });
                    }
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && map.len() as u64 > max
            {
                out.push(Violation {
                    path: path.to_owned(),
                    message: format!("Too many: {}: must have at most {max} items", map.len()),
                });
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, v) in map {
                let child = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) => walk(s, v, &child, out),
                    (None, Some(s)) if s.is_object() => walk(s, v, &child, out),
                    _ => out.push(Violation {
                        path: child,
                        message: "unknown field".into(),
                    }),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::resources::CredentialCutover;

    fn cutover(spec: Value) -> Value {
        json!({"apiVersion": "credshift.dev/v1alpha1", "kind": "CredentialCutover",
               "metadata": {"name": "c"}, "spec": spec})
    }

    #[test]
    fn bounds_patterns_formats_and_unknown_fields() {
        let crd = serde_json::to_value(CredentialCutover::crd()).unwrap();
        let ok = cutover(
            json!({"policyRef": {"name": "p"}, "at": "2018-04-18T00:00:00+09:00",
                                "split": {"from": "login", "into": ["support"]}}),
        );
        assert_eq!(check(&crd, &ok), vec![]);
        let bad = cutover(
            json!({"policyRef": {"name": "p"}, "at": "soon", "batchSize": 0, "window": "6 h",
                                 "split": {"from": "Login", "into": ["support"], "extra": 1}}),
        );
        let paths: Vec<String> = check(&crd, &bad).into_iter().map(|v| v.path).collect();
        for p in [
            "spec.at",
            "spec.batchSize",
            "spec.window",
            "spec.split.from",
            "spec.split.extra",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} in {paths:?}");
        }
    }
}
