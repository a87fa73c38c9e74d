//! People: the one list of everyone tomare knows (`tomare user list` and
//! the admin's people page), and the directory's CSV (`tomare users
//! import` and the people page's import).

use tomare_config::Config;
use tomare_store::Store;

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error("{0}")]
    Store(#[from] tomare_store::StoreError),
    #[error("{0}")]
    Rules(#[from] tomare_policy::RuleError),
}

/// One CSV line's fields: commas, double quotes with "" inside.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

/// The directory from CSV with a header row naming the columns email, name,
/// role, supervisor, groups (any order; only email is required).
pub fn parse_directory_csv(text: &str) -> Result<Vec<tomare_store::DirectoryEntry>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> =
        csv_fields(lines.next().unwrap_or_default()).into_iter().map(|h| h.to_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let email = col("email").ok_or("the header row has no \"email\" column")?;
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let f = csv_fields(line);
        let get = |i: Option<usize>| i.and_then(|i| f.get(i)).cloned().unwrap_or_default();
        let address = get(Some(email));
        if !address.contains('@') {
            return Err(format!("line {}: {address:?} is not an address", n + 2));
        }
        let supervisor = get(col("supervisor"));
        out.push(tomare_store::DirectoryEntry {
            source: tomare_store::Source::Import,
            email: address,
            name: get(col("name")),
            role: get(col("role")),
            supervisor: (!supervisor.is_empty()).then_some(supervisor),
            groups: get(col("groups"))
                .split([';', '|'])
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect(),
        });
    }
    Ok(out)
}

/// One person as `user list` shows them.
#[derive(serde::Serialize)]
pub struct PersonLine {
    pub email: String,
    pub name: String,
    pub role: crate::accounts::Role,
    pub supervisor: Option<String>,
    pub groups: Vec<String>,
    pub source: tomare_store::Source,
    pub can_sign_in: bool,
    pub send_as: Vec<String>,
}

/// Everyone tomare knows, one line each: the directory the rules use
/// (config `[[user]]`s over people added or imported), `[org] admins`, and
/// accounts without a directory entry.
pub async fn people(
    config: &Config,
    store: &dyn Store,
    org: Option<tomare_model::OrgId>,
) -> Result<Vec<PersonLine>, PeopleError> {
    let stored = match org {
        Some(org) => store.directory(org).await?,
        None => Vec::new(),
    };
    let rules = tomare_review::Rules::new(config, Vec::new(), stored.clone())?;
    let mut sources: std::collections::BTreeMap<String, tomare_store::Source> =
        stored.iter().map(|e| (e.email.to_lowercase(), e.source)).collect();
    for u in &config.user {
        sources.insert(u.email.to_lowercase(), tomare_store::Source::Config);
    }
    for a in &config.org.admins {
        sources.entry(a.to_lowercase()).or_insert(tomare_store::Source::Config);
    }
    let accounts: std::collections::HashMap<String, tomare_store::UserRow> =
        store.list_users().await?.into_iter().map(|u| (u.email.to_lowercase(), u)).collect();
    for email in accounts.keys() {
        sources.entry(email.clone()).or_insert(tomare_store::Source::Account);
    }
    Ok(sources
        .into_iter()
        .map(|(email, source)| {
            let entry = rules.directory.get(&email);
            let person = crate::accounts::Person::of(config, &rules.directory, &email);
            let account = accounts.get(&email);
            PersonLine {
                name: entry.map(|e| e.name.clone()).unwrap_or_default(),
                role: person.role,
                supervisor: entry.and_then(|e| e.supervisor.clone()),
                groups: entry.map(|e| e.groups.clone()).unwrap_or_default(),
                source,
                can_sign_in: account.is_some(),
                send_as: account.map(|a| a.send_as.iter().map(ToString::to_string).collect()).unwrap_or_default(),
                email,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_csv_with_quotes_groups_and_any_column_order() {
        let csv = "name,email,supervisor,groups,role\n\"Yamada, Taro\",taro@example.com,boss@example.com,sales;tokyo,member\n\nBoss,boss@example.com,,,approver\n";
        let d = parse_directory_csv(csv).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "Yamada, Taro");
        assert_eq!(d[0].supervisor.as_deref(), Some("boss@example.com"));
        assert_eq!(d[0].groups, ["sales", "tokyo"]);
        assert_eq!(d[1].supervisor, None);
        assert!(parse_directory_csv("name\nx\n").is_err());
        assert!(parse_directory_csv("email\nnot-an-address\n").unwrap_err().contains("line 2"));
    }
}
