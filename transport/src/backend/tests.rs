use super::*;

#[test]
fn types_parse_case_insensitively_with_the_1_2_spellings() {
    for (given, kind) in [
        ("native", Kind::Native),
        ("NATIVE", Kind::Native),
        ("haproxy", Kind::Haproxy),
        ("HaproxySubprocess", Kind::Haproxy),
        ("Nginx", Kind::Nginx),
        ("NginxSubprocess", Kind::Nginx),
        ("stunnel", Kind::Stunnel),
        ("StunnelSubprocess", Kind::Stunnel),
    ] {
        assert_eq!(given.parse::<Kind>(), Ok(kind), "{given}");
    }
    let e = "envoy".parse::<Kind>().unwrap_err();
    assert!(e.contains("native, haproxy, nginx or stunnel"), "{e}");
    assert!("subprocess".parse::<Kind>().is_err());
}

#[test]
fn every_kind_names_itself_as_it_parses() {
    for k in Kind::ALL {
        assert_eq!(k.to_string().parse::<Kind>(), Ok(k));
    }
}
