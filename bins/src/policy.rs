//! The facility's policy as the daemons' flags and configuration file give it: destination
//! rules (`allow-targets`, `allow-peers`) and quotas (`[[quota]]`, `[default-quota]`), read
//! into the protocol's [`Policy`].

use anyhow::{Context, Result, bail};
use scistream_fsm::policy::{Quota, QuotaRule, Quotas, Roles, Rule};
use scistream_fsm::{Principal, Role};

use crate::config::s2cs::QuotaArgs;

/// The rules of `--{flag}` (flags replace the file's list; absent from both: `None`).
pub fn rules(flag: &str, cli: Option<&Vec<String>>, file: Option<&Vec<String>>) -> Result<Option<Vec<Rule>>> {
    let Some(list) = cli.or(file) else { return Ok(None) };
    let rules = list.iter().map(|r| r.parse::<Rule>().with_context(|| format!("--{flag}"))).collect::<Result<_>>()?;
    Ok(Some(rules))
}

/// A quota from its table.
fn quota(q: &QuotaArgs, what: &str) -> Result<Quota> {
    let roles = match &q.roles {
        None => Roles::BOTH,
        Some(list) => {
            let mut roles = Roles { prod: false, cons: false };
            for r in list {
                // The wire's spelling, any case.
                match scistream_proto::convert::role_from_wire(r) {
                    Ok(Role::Prod) => roles.prod = true,
                    Ok(Role::Cons) => roles.cons = true,
                    Err(_) => bail!("{what}: roles: {r:?} is neither PROD nor CONS"),
                }
            }
            roles
        }
    };
    Ok(Quota {
        may_request: q.may_request.unwrap_or(true),
        roles,
        max_sessions: q.max_sessions,
        max_num_conn: q.max_num_conn,
        max_rate: q.max_rate,
    })
}

/// The quotas of the `[[quota]]` tables and the `[default-quota]`.
pub fn quotas(rules: &[QuotaArgs], default: Option<&QuotaArgs>) -> Result<Quotas> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, q) in rules.iter().enumerate() {
        let name = if q.name.is_empty() { format!("quota #{}", i + 1) } else { q.name.clone() };
        if q.identities.is_empty() {
            bail!("[[quota]] {name}: no identities (the [default-quota] holds everybody else)");
        }
        let identities = q.identities.iter().cloned().map(Principal).collect();
        out.push(QuotaRule { quota: quota(q, &format!("[[quota]] {name}"))?, identities });
    }
    if default.is_some_and(|d| !d.identities.is_empty()) {
        bail!("[default-quota] applies to every identity no [[quota]] names: it takes no identities");
    }
    let default = default.map(|d| quota(d, "[default-quota]")).transpose()?.unwrap_or_default();
    Ok(Quotas { rules: out, default })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_replace_the_files_rules_and_a_bad_rule_names_its_flag() {
        let file = vec!["192.0.2.0/24".to_owned()];
        let cli = vec!["198.51.100.0/24:7000".to_owned()];
        let got = rules("allow-target", Some(&cli), Some(&file)).unwrap().unwrap();
        assert_eq!(got, vec!["198.51.100.0/24:7000".parse::<Rule>().unwrap()]);
        assert_eq!(rules("allow-target", None, None).unwrap(), None);
        let e = rules("allow-peer", Some(&vec!["gw.example.org".to_owned()]), None).unwrap_err();
        assert!(format!("{e:#}").contains("--allow-peer"), "{e:#}");
    }

    #[test]
    fn quota_tables_read_into_quotas_and_mistakes_are_refused() {
        let beam = QuotaArgs {
            name: "beamline".into(),
            identities: vec!["alice".into()],
            roles: Some(vec!["prod".into()]),
            max_sessions: Some(2),
            ..QuotaArgs::default()
        };
        let q = quotas(std::slice::from_ref(&beam), None).unwrap();
        let alice = q.of(&Principal("alice".into()));
        assert!(alice.roles.prod && !alice.roles.cons && alice.max_sessions == Some(2));
        assert_eq!(q.of(&Principal("bob".into())), &Quota::default());
        let nobody = QuotaArgs { identities: Vec::new(), ..beam.clone() };
        assert!(quotas(&[nobody], None).is_err());
        let bad_role = QuotaArgs { roles: Some(vec!["BOTH".into()]), ..beam };
        assert!(quotas(&[bad_role], None).is_err());
    }
}
