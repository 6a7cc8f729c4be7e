//! A person's role on a repository, as GitHub names it, ordered by what it allows.

/// The five base roles of a GitHub repository (and `None` for no access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Role {
    /// The base role called `name`, if it is one.
    pub fn base(name: &str) -> Option<Role> {
        Some(match name {
            "admin" => Role::Admin,
            "maintain" => Role::Maintain,
            "write" => Role::Write,
            "triage" => Role::Triage,
            "read" => Role::Read,
            "none" => Role::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Read => "read",
            Role::Triage => "triage",
            Role::Write => "write",
            Role::Maintain => "maintain",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
