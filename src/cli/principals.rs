//! How `strongroom principal list` and `show` print principals: a table for people, JSON for
//! scripts. Never a key or a TOTP secret (the store does not return them).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::store::PrincipalListing;

/// The principals as a table, or as `{"principals": [...]}`.
pub(super) fn print_list(listed: &[PrincipalListing], json: bool) {
    if json {
        let principals: Vec<Value> = listed.iter().map(to_json).collect();
        println!("{}", json!({ "principals": principals }));
        return;
    }
    let rows: Vec<[String; 8]> = listed
        .iter()
        .map(|p| {
            let principal = &p.record.principal;
            [
                principal.id.0.to_string(),
                p.tenant_name.clone(),
                principal.name.clone(),
                roles(p).join(","),
                second_factor(p).to_owned(),
                at(Some(p.created_at)),
                at(p.record.expires_at),
                at(p.record.disabled_at),
            ]
        })
        .collect();
    let header = [
        "ID",
        "TENANT",
        "NAME",
        "ROLES",
        "SECOND FACTOR",
        "CREATED",
        "EXPIRES",
        "DISABLED",
    ];
    // Each column as wide as its widest cell, so that long names keep the table readable.
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One principal as lines of `field: value`, or as one JSON object.
pub(super) fn print_one(p: &PrincipalListing, json: bool) {
    if json {
        println!("{}", to_json(p));
        return;
    }
    let principal = &p.record.principal;
    println!("id:            {}", principal.id.0);
    println!("tenant:        {} ({})", p.tenant_name, principal.tenant.0);
    println!("name:          {}", principal.name);
    println!("roles:         {}", roles(p).join(", "));
    println!("second factor: {}", second_factor(p));
    println!("created:       {}", at(Some(p.created_at)));
    println!("expires:       {}", at(p.record.expires_at));
    println!("disabled:      {}", at(p.record.disabled_at));
}

fn to_json(p: &PrincipalListing) -> Value {
    let principal = &p.record.principal;
    json!({
        "id": principal.id.0,
        "tenant": p.tenant_name,
        "tenant_id": principal.tenant.0,
        "name": principal.name,
        "roles": roles(p),
        "second_factor": second_factor(p),
        "totp_locked_until": p.totp_locked_until,
        "created_at": p.created_at,
        "expires_at": p.record.expires_at,
        "disabled_at": p.record.disabled_at,
    })
}

fn roles(p: &PrincipalListing) -> Vec<&'static str> {
    p.record
        .principal
        .roles
        .iter()
        .map(|r| r.as_str())
        .collect()
}

/// `totp`, `none`, or `totp (locked)` while wrong codes keep it locked.
fn second_factor(p: &PrincipalListing) -> &'static str {
    match (p.second_factor, p.totp_locked_until) {
        (false, _) => "none",
        (true, Some(until)) if until > SystemClock.now() => "totp (locked)",
        (true, _) => "totp",
    }
}

fn at(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}
