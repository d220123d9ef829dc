//! Output for people (aligned tables) and scripts (the API's own JSON).

use serde_json::Value;

use crate::cli::Output;

/// A table: a header row and rows of cells.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row of the given fields of `item` (see [`field_cell`]).
    pub fn row_of(&mut self, item: &Value, fields: &[&str]) {
        self.rows
            .push(fields.iter().map(|f| field_cell(f, &item[*f])).collect());
    }

    /// Columns padded to their widest cell, separated by two spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(self.header.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }
}

/// Text from the server with its control characters escaped (`\u{1b}`, `\n`): it cannot
/// move the cursor, retitle the terminal or fake table rows.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A cell: strings bare (control characters escaped), arrays joined with `,`, null empty,
/// others as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => printable(s),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A field's cell: times (`…_at` fields the API gives as epoch milliseconds) in RFC 3339,
/// UTC; everything else as [`cell`] shows it.
pub fn field_cell(field: &str, value: &Value) -> String {
    if field.ends_with("_at") {
        if let Some(at) = value
            .as_i64()
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        {
            return at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        }
    }
    cell(value)
}

/// Prints `value` as JSON, or as the table `to_table` makes of it.
pub fn print(output: Output, value: &Value, to_table: impl FnOnce(&Value) -> Table) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Table => print!("{}", to_table(value).render()),
    }
}

/// Every value named `name` in `value`, depth first, as table cells.
pub fn field_values(value: &Value, name: &str) -> Vec<String> {
    fn walk(value: &Value, name: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    if key == name {
                        match item {
                            Value::Array(items) => out.extend(items.iter().map(cell)),
                            other => out.push(cell(other)),
                        }
                    } else {
                        walk(item, name, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, name, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, name, &mut out);
    out
}

impl super::Client {
    /// Prints an answer as `-o` and `--field` ask. A field the answer lacks ends the
    /// command with exit code 1 (a script must not go on with an empty value).
    pub fn print(&self, value: &Value, to_table: impl FnOnce(&Value) -> Table) {
        let Some(name) = &self.field else {
            return print(self.output, value, to_table);
        };
        let found = field_values(value, name);
        if found.is_empty() {
            eprintln!("error: the answer has no field {name:?}");
            std::process::exit(1);
        }
        for item in found {
            println!("{item}");
        }
    }
}

/// A two-column FIELD/VALUE table of one object.
pub fn object_table(value: &Value, fields: &[&str]) -> Table {
    let mut table = Table::new(vec!["FIELD", "VALUE"]);
    for f in fields {
        table
            .rows
            .push(vec![(*f).to_owned(), field_cell(f, &value[*f])]);
    }
    table
}

/// A table with one row per item of `items`.
pub fn list_table(items: &Value, header: Vec<&'static str>, fields: &[&str]) -> Table {
    let mut table = Table::new(header);
    for item in items.as_array().into_iter().flatten() {
        table.row_of(item, fields);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_tables_align_columns() {
        let apps = json!([
            {"app_id": "23abe056f6ca5fb0704b7a1525999c94", "app_name": "app_demo01", "bounded_api_count": 1, "app_codes": ["c1", "c2"]},
            {"app_id": "0f", "app_name": "a", "bounded_api_count": 0, "app_codes": []},
        ]);
        let table = list_table(
            &apps,
            vec!["ID", "NAME", "APIS", "CODES"],
            &["app_id", "app_name", "bounded_api_count", "app_codes"],
        );
        assert_eq!(
            table.render(),
            "ID                                NAME        APIS  CODES\n\
             23abe056f6ca5fb0704b7a1525999c94  app_demo01  1     c1,c2\n\
             0f                                a           0\n"
        );
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            cell(&json!("hi\u{1b}[31mRED\u{1b}]0;T\u{7}\r\nFAKE")),
            "hi\\u{1b}[31mRED\\u{1b}]0;T\\u{7}\\r\\nFAKE"
        );
        assert_eq!(cell(&json!("plain é")), "plain é");
    }

    #[test]
    fn times_read_as_rfc_3339_in_utc() {
        assert_eq!(
            field_cell("created_at", &json!(1796507304891i64)),
            "2026-12-05T21:48:24Z"
        );
        // Not a time field, or not a number: as it is.
        assert_eq!(field_cell("timeout_ms", &json!(40000)), "40000");
        assert_eq!(
            field_cell("expires_at", &json!("2026-12-06T21:48:24.877000Z")),
            "2026-12-06T21:48:24.877000Z"
        );
    }

    #[test]
    fn fields_are_found_at_any_depth_in_order() {
        let answer = json!({"app": {"app_id": "a1", "app_codes": ["c1"]}, "apps": [
            {"app_id": "a2", "inner": {"app_id": "a3"}}, {"app_name": "x"}]});
        assert_eq!(field_values(&answer, "app_id"), ["a1", "a2", "a3"]);
        assert_eq!(field_values(&answer, "app_codes"), ["c1"]);
        let codes = json!({"app": {"app_codes": ["c1", "c2"]}});
        assert_eq!(field_values(&codes, "app_codes"), ["c1", "c2"]);
        assert!(field_values(&answer, "missing").is_empty());
        assert!(field_values(&json!("text"), "app_id").is_empty());
    }

    #[test]
    fn object_tables_show_one_field_per_line() {
        let service = json!({"service_id": "6f1c", "service_name": "llama", "upstreams": ["http://a", "http://b"], "timeout_ms": 40000});
        let table = object_table(
            &service,
            &["service_id", "service_name", "upstreams", "timeout_ms"],
        );
        assert_eq!(
            table.render(),
            "FIELD         VALUE\n\
             service_id    6f1c\n\
             service_name  llama\n\
             upstreams     http://a,http://b\n\
             timeout_ms    40000\n"
        );
    }
}
