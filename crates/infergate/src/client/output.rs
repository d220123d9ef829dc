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

    /// Adds a row of the given fields of `item` (strings as they are, others as JSON).
    pub fn row_of(&mut self, item: &Value, fields: &[&str]) {
        self.rows
            .push(fields.iter().map(|f| cell(&item[*f])).collect());
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

/// A cell: strings bare, arrays joined with `,`, null empty, others as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
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

/// A two-column FIELD/VALUE table of one object.
pub fn object_table(value: &Value, fields: &[&str]) -> Table {
    let mut table = Table::new(vec!["FIELD", "VALUE"]);
    for f in fields {
        table.rows.push(vec![(*f).to_owned(), cell(&value[*f])]);
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
