//! Who may call each route, whatever the spelling of its path: every row
//! of both route tables (the provider's and the bridge's), reached through
//! every other spelling of its path, is either refused as malformed (400),
//! no route at all (404), or guarded exactly as its row says. A spelling
//! that routed under a weaker guard is how `//integrations` once ran
//! commands with only the API key.

use crate::api::{self, Guard};
use crate::http::Request;

/// What the drivers decide for a request (`Hub::pump`): the bridge's table
/// for its paths, the provider's for the rest. `Err` is the status it is
/// refused with before any credential is looked at.
fn decided(method: &str, target: &str) -> Result<Guard, u16> {
    let request =
        Request::new(method, target, Vec::new(), bytes::Bytes::new()).map_err(|e| e.status())?;
    let path = request.path();
    if let Some(guard) = crate::bridge::guard(method, path) {
        return Ok(guard);
    }
    api::route(method, path)
        .map(|m| m.guard)
        .map_err(|e| e.status)
}

/// Other spellings of `path`, each with whether it names the same route.
fn spellings(path: &str) -> Vec<(String, bool)> {
    let rest = path.trim_start_matches('/');
    let mut same = vec![
        format!("//{rest}"),
        format!("///{rest}"),
        format!("/./{rest}"),
        format!("/x/../{rest}"),
        format!("{path}/"),
        format!("{path}/."),
        format!("{path}//"),
        format!("http://127.0.0.1:8788/{rest}"),
        path.replacen('/', "//", 2),
    ];
    // Each letter of the first segment percent-encoded.
    if let Some(c) = rest.chars().next().filter(char::is_ascii_alphanumeric) {
        same.push(format!("/%{:02X}{}", c as u32, &rest[1..]));
        same.push(format!("/%{:02x}{}", c as u32, &rest[1..]));
    }
    let mut spelled: Vec<(String, bool)> = same.into_iter().map(|s| (s, true)).collect();
    // An encoded slash is refused, never read as a boundary; routes are
    // case-sensitive, so another case is another path.
    let mut other = vec![path.to_uppercase()];
    if let Some((first, tail)) = rest.split_once('/') {
        other.push(format!("/{first}%2f{tail}"));
        other.push(format!("/{}", rest.replace('/', "%2F")));
    }
    spelled.extend(other.into_iter().map(|s| (s, false)));
    spelled
}

#[test]
fn every_spelling_of_every_route_has_its_rows_guard_or_none() {
    let mut rows = api::routes::every_route();
    rows.extend(crate::bridge::every_route());
    assert!(rows.len() > 40, "both tables are read");
    for (method, path, guard) in rows {
        if path == "/" {
            continue;
        }
        assert_eq!(decided(method, &path), Ok(guard), "{method} {path}");
        for (spelling, same) in spellings(&path) {
            let got = decided(method, &spelling);
            match (same, got) {
                (true, got) => assert_eq!(got, Ok(guard), "{method} {spelling} (of {path})"),
                (false, Err(400 | 404)) => {}
                (false, Ok(weaker)) => panic!(
                    "{method} {spelling} (of {path}) routes with {weaker:?}, its row has {guard:?}"
                ),
                (false, Err(status)) => panic!("{method} {spelling}: {status}"),
            }
        }
    }
}

#[test]
fn the_integrations_api_takes_the_bridge_token_however_it_is_spelled() {
    for method in ["GET", "POST", "DELETE", "PUT"] {
        for target in [
            "//integrations",
            "///integrations",
            "/./integrations/",
            "//integrations//x",
        ] {
            assert_eq!(
                decided(method, target),
                Ok(Guard::BridgeToken),
                "{method} {target}"
            );
        }
    }
    assert_eq!(decided("POST", "/integrations%2Fx"), Err(400));
    assert_eq!(decided("POST", "/INTEGRATIONS"), Err(404));
}
