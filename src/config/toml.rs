//! Reading a TOML document with nanoserde 0.2.1, around its gaps: each table is parsed
//! on its own (its parser leaks table prefixes into `[[channel]]`), `""` is smuggled
//! past it, and a key set in two tables is refused.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::Path;

use nanoserde::{Toml, TomlParser};

use super::ConfigError;

/// Parses each table on its own, because nanoserde's parser carries the previous
/// `[table]` prefix into `[[channel]]` keys and sends every key after a
/// `[[channel]]` into that channel. Also refuses a key set twice across tables.
pub(super) fn parse_toml(
    text: &str,
    path: Option<&Path>,
) -> Result<BTreeMap<String, Toml>, ConfigError> {
    let mut merged = BTreeMap::new();
    for (first_line, table) in split_tables(text) {
        let map = TomlParser::parse(&table).map_err(|e| ConfigError::Syntax {
            path: path.map(Path::to_path_buf),
            line: first_line + e.line + 1,
            message: e.msg.trim().to_string(),
        })?;
        for (key, mut value) in map {
            restore_empty_strings(&mut value);
            match merged.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => match (slot.get_mut(), value) {
                    (Toml::Array(all), Toml::Array(more)) => all.extend(more),
                    _ => {
                        let what = format!("key {:?} is set more than once", slot.key());
                        return Err(ConfigError::Duplicate { what });
                    }
                },
            }
        }
    }
    Ok(merged)
}

/// Stands in for `""`, which nanoserde 0.2.1 cannot parse (it reads `""` as the
/// start of a `"""` string).
const EMPTY: &str = "\u{E000}";

/// Splits a document before each `[table]` / `[[table]]` header line (not inside a
/// multi-line array or `"""` string) and writes each `""` as `"`[`EMPTY`]`"`.
/// Yields (0-based first line, text) per table.
fn split_tables(text: &str) -> Vec<(usize, String)> {
    let (mut tables, mut table, mut start_line) = (Vec::new(), String::new(), 0);
    let (mut depth, mut in_long_string) = (0usize, false);
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if depth == 0 && !in_long_string && line.trim_start().starts_with('[') {
            if !table.is_empty() {
                tables.push((start_line, std::mem::take(&mut table)));
            }
            start_line = n;
            table.push_str(line);
            continue;
        }
        let (b, mut i, mut copied) = (line.as_bytes(), 0, 0);
        while i < b.len() {
            match b[i] {
                b'\\' if in_long_string => i += 1,
                b'"' if b[i..].starts_with(br#"""""#) => {
                    in_long_string = !in_long_string;
                    i += 2;
                }
                _ if in_long_string => {}
                b'#' => break,
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b'"' if b[i..].starts_with(br#""""#) => {
                    table.push_str(&line[copied..=i]);
                    table.push_str(EMPTY);
                    (copied, i) = (i + 1, i + 1);
                }
                quote @ (b'"' | b'\'') => {
                    i += 1;
                    while i < b.len() && b[i] != quote && b[i] != b'\n' {
                        i += if quote == b'"' && b[i] == b'\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        table.push_str(&line[copied..]);
    }
    tables.push((start_line, table));
    tables
}

fn restore_empty_strings(value: &mut Toml) {
    match value {
        Toml::Str(s) if s == EMPTY => s.clear(),
        Toml::SimpleArray(items) => items.iter_mut().for_each(restore_empty_strings),
        Toml::Array(tables) => tables
            .iter_mut()
            .flat_map(|t| t.values_mut())
            .for_each(restore_empty_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_split_outside_strings_and_arrays() {
        let doc = "a = [\n  \"x\",\n  [1],\n]\nb = \"\"\"\n[not]\n\"\"\"\n# [c]\n[t]\nk = \"[\" # ]\n[[u]]\n";
        let lines: Vec<usize> = split_tables(doc).iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [0, 8, 10]);
        assert_eq!(
            split_tables("[t]\nk = 1\n"),
            [(0, "[t]\nk = 1\n".to_string())]
        );
        assert_eq!(split_tables(""), [(0, String::new())]);
    }
}
