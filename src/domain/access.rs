//! Who may do what: roles, the actions they may take, and the one permission matrix.

use super::{PartnerId, wire_enum};

wire_enum!(
    /// The role a token acts in.
    Role("role") {
        /// A partner's global admin: everything its admin agents may, plus its partner's tokens.
        GlobalAdmin => "global_admin",
        /// A partner's admin agent: what a sales agent may (relationships are back office's).
        AdminAgent => "admin_agent",
        /// A partner's sales agent: buys subscriptions, reads its partner's customers.
        SalesAgent => "sales_agent",
        /// Keeps customer and partner qualifications and relationships true.
        BackOffice => "back_office",
        /// Reads everything, including the audit log; changes nothing.
        Auditor => "auditor",
        /// Runs the platform: tokens and the offer catalog.
        Operator => "operator",
    }
);

impl Role {
    /// Partner roles are bound to one partner and see only its customers.
    pub fn is_partner_role(self) -> bool {
        matches!(
            self,
            Self::GlobalAdmin | Self::AdminAgent | Self::SalesAgent
        )
    }
}

/// Something a request does, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read partners and their profiles.
    ReadPartners,
    /// Create partners, change their reseller qualifications and provider links.
    ManagePartners,
    /// Read the offer catalog.
    ReadOffers,
    /// Create offers.
    ManageOffers,
    /// Read customers, their qualifications and relationships.
    ReadCustomers,
    /// Create and import customers, change their qualifications.
    ManageCustomers,
    /// Link a customer to a partner.
    ManageRelationships,
    /// Buy subscriptions.
    Purchase,
    /// Ask for decisions and eligible offers.
    ReadDecisions,
    /// Read subscriptions.
    ReadSubscriptions,
    /// Change a subscription's status.
    ManageSubscriptions,
    /// Read the audit log.
    ReadAudit,
    /// Create, list, disable and revoke tokens and console users.
    ManageAccess,
    /// Register, disable and inspect webhook endpoints.
    ManageWebhooks,
    /// Read the change feed (`/v1/partner-events`).
    ReadEventFeed,
    /// Read the published policy versions: the rules are no secret to anyone who is bound by them.
    ReadPolicies,
    /// Check and publish policy versions.
    PublishPolicies,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 17] = [
        Self::ReadPartners,
        Self::ManagePartners,
        Self::ReadOffers,
        Self::ManageOffers,
        Self::ReadCustomers,
        Self::ManageCustomers,
        Self::ManageRelationships,
        Self::Purchase,
        Self::ReadDecisions,
        Self::ReadSubscriptions,
        Self::ManageSubscriptions,
        Self::ReadAudit,
        Self::ManageAccess,
        Self::ManageWebhooks,
        Self::ReadEventFeed,
        Self::ReadPolicies,
        Self::PublishPolicies,
    ];
}

/// The permission matrix: whether `role` may take `action` at all. Partner roles are further
/// scoped to their own partner and its customers by the use cases.
pub fn permits(role: Role, action: Action) -> bool {
    use Action::*;
    use Role::*;
    match role {
        Operator => matches!(
            action,
            ReadPartners
                | ReadOffers
                | ManageOffers
                | ManageAccess
                | ManageWebhooks
                | ReadEventFeed
                | ReadPolicies
                | PublishPolicies
        ),
        BackOffice => matches!(
            action,
            ReadPartners
                | ManagePartners
                | ReadOffers
                | ReadCustomers
                | ManageCustomers
                | ManageRelationships
                | ReadDecisions
                | ReadSubscriptions
                | ManageSubscriptions
                | ReadPolicies
        ),
        Auditor => matches!(
            action,
            ReadPartners
                | ReadOffers
                | ReadCustomers
                | ReadDecisions
                | ReadSubscriptions
                | ReadAudit
                | ReadPolicies
        ),
        SalesAgent => matches!(
            action,
            ReadPartners
                | ReadOffers
                | ReadCustomers
                | Purchase
                | ReadDecisions
                | ReadSubscriptions
                | ReadEventFeed
                | ReadPolicies
        ),
        // A relationship lets a partner see a customer and buy for it, so no partner role may make
        // one: back office does, on the customer's word.
        AdminAgent => permits(SalesAgent, action),
        GlobalAdmin => {
            permits(AdminAgent, action) || matches!(action, ManageAccess | ManageWebhooks)
        }
    }
}

/// Who acts, as every change records it (the `actor`, `actor_role`, `actor_partner_id` and
/// `request_id` columns): built once per request by the application layer, so that persistence
/// needs nothing from the layers above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    id: String,
    role: Option<Role>,
    partner_id: Option<PartnerId>,
    request_id: Option<String>,
}

impl Actor {
    /// The principal acting (`None`: the operator's command line, recorded as `system`) through
    /// the request `request_id`.
    pub fn new(principal: Option<&Principal>, request_id: Option<String>) -> Self {
        Self {
            id: principal.map_or_else(|| "system".to_owned(), |p| p.id.to_string()),
            role: principal.map(|p| p.role),
            partner_id: principal.and_then(|p| p.partner_id),
            request_id,
        }
    }

    /// The principal's id, or `system`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The principal's role, as stored.
    pub fn role(&self) -> Option<&'static str> {
        self.role.map(Role::as_str)
    }

    /// The partner a partner role acts for.
    pub fn partner_id(&self) -> Option<uuid::Uuid> {
        self.partner_id.map(|p| p.0)
    }

    /// The request that carried the action.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id; the actor recorded on events.
    pub id: uuid::Uuid,
    /// The role it acts in.
    pub role: Role,
    /// For partner roles, the partner it acts for.
    pub partner_id: Option<PartnerId>,
}

impl Principal {
    /// The partner whose data alone this principal may see, if it is partner-bound.
    pub fn partner_scope(&self) -> Option<PartnerId> {
        self.partner_id.filter(|_| self.role.is_partner_role())
    }

    /// Whether this principal may create or revoke a token or user of `role` for `partner`.
    pub fn may_grant(&self, role: Role, partner: Option<PartnerId>) -> bool {
        match self.role {
            Role::Operator => true,
            Role::GlobalAdmin => {
                role.is_partner_role() && partner.is_some() && partner == self.partner_id
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's matrix, row by row: O=operator, B=back_office, A=auditor, S=sales_agent,
    /// M=admin_agent, G=global_admin.
    const MATRIX: [(Action, &str); 17] = [
        (Action::ReadPartners, "OBASMG"),
        (Action::ManagePartners, "B"),
        (Action::ReadOffers, "OBASMG"),
        (Action::ManageOffers, "O"),
        (Action::ReadCustomers, "BASMG"),
        (Action::ManageCustomers, "B"),
        (Action::ManageRelationships, "B"),
        (Action::Purchase, "SMG"),
        (Action::ReadDecisions, "BASMG"),
        (Action::ReadSubscriptions, "BASMG"),
        (Action::ManageSubscriptions, "B"),
        (Action::ReadAudit, "A"),
        (Action::ManageAccess, "OG"),
        (Action::ManageWebhooks, "OG"),
        (Action::ReadEventFeed, "OSMG"),
        (Action::ReadPolicies, "OBASMG"),
        (Action::PublishPolicies, "O"),
    ];

    #[test]
    fn the_matrix_is_the_documented_one() {
        let letters = [
            (Role::Operator, 'O'),
            (Role::BackOffice, 'B'),
            (Role::Auditor, 'A'),
            (Role::SalesAgent, 'S'),
            (Role::AdminAgent, 'M'),
            (Role::GlobalAdmin, 'G'),
        ];
        assert_eq!(MATRIX.len(), Action::ALL.len());
        for (action, allowed) in MATRIX {
            for (role, letter) in letters {
                assert_eq!(
                    permits(role, action),
                    allowed.contains(letter),
                    "{role} {action:?}"
                );
            }
        }
    }

    #[test]
    fn global_admins_manage_only_their_partners_partner_tokens() {
        let mine = PartnerId::new();
        let admin = Principal {
            id: uuid::Uuid::now_v7(),
            role: Role::GlobalAdmin,
            partner_id: Some(mine),
        };
        assert!(admin.may_grant(Role::SalesAgent, Some(mine)));
        assert!(admin.may_grant(Role::GlobalAdmin, Some(mine)));
        assert!(!admin.may_grant(Role::SalesAgent, Some(PartnerId::new())));
        assert!(!admin.may_grant(Role::BackOffice, None));
        let operator = Principal {
            id: uuid::Uuid::now_v7(),
            role: Role::Operator,
            partner_id: None,
        };
        assert!(operator.may_grant(Role::Auditor, None));
        assert_eq!(operator.partner_scope(), None);
        assert_eq!(admin.partner_scope(), Some(mine));
    }
}
