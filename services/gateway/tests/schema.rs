//! The contract's core GraphQL schema (`../shared/CONTRACT.md`, copied verbatim below) is part
//! of ours: every type, field, argument (with its default), input field and enum value it names
//! exists here with exactly that type. More may be added; nothing may differ.

use std::collections::BTreeMap;

use async_graphql::parser::{
    parse_schema,
    types::{TypeKind, TypeSystemDefinition},
};

const CONTRACT: &str = r#"
type Query {
  products(limit: Int = 20, offset: Int = 0, search: String, category: String): [Product!]!
  product(id: ID!): Product                      # null when absent
  me: User                                       # null when anonymous
  orders(limit: Int = 20, offset: Int = 0): [Order!]!   # the caller's own
  order(id: ID!): Order                          # own or admin, else null
}
type Mutation {
  register(email: String!, password: String!, fullName: String!): User!
  login(email: String!, password: String!): AuthPayload!
  refreshToken(refreshToken: String!): AuthPayload!
  createProduct(input: ProductInput!): Product!            # admin
  updateProduct(id: ID!, input: ProductUpdateInput!): Product!   # admin
  deleteProduct(id: ID!): Boolean!                          # admin
  createOrder(items: [OrderItemInput!]!, idempotencyKey: String): Order!
  cancelOrder(id: ID!): Order!
  payOrder(orderId: ID!, card: CardInput!, idempotencyKey: String): Payment!
}
type Product { id: ID! name: String! description: String! price: Decimal! currency: String! stock: Int! category: String }
type User { id: ID! email: String! fullName: String! role: Role! }
enum Role { USER ADMIN }
type AuthPayload { accessToken: String! refreshToken: String! tokenType: String! expiresIn: Int! }
type Order { id: ID! status: OrderStatus! items: [OrderItem!]! total: Decimal! currency: String! createdAt: DateTime! payment: Payment }
type OrderItem { product: Product productId: ID! name: String! quantity: Int! unitPrice: Decimal! lineTotal: Decimal! }
enum OrderStatus { PENDING_PAYMENT PAID CANCELLED REFUNDED }
type Payment { id: ID! orderId: ID! status: PaymentStatus! amount: Decimal! failureCode: String cardBrand: String! cardLast4: String! }
enum PaymentStatus { SUCCEEDED FAILED REFUNDED }
input ProductInput { name: String! description: String! price: Decimal! stock: Int! category: String }
input ProductUpdateInput { name: String description: String price: Decimal stock: Int category: String }
input OrderItemInput { productId: ID! quantity: Int! }
input CardInput { number: String! expMonth: Int! expYear: Int! cvc: String! }
"#;

/// `Type.field` → type, `Type.field(arg)` → type and default, `Enum.VALUE`, `scalar X`.
fn signatures(sdl: &str) -> BTreeMap<String, String> {
    let doc = parse_schema(sdl).expect("a valid schema");
    let mut out = BTreeMap::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let name = t.node.name.node.to_string();
        match t.node.kind {
            TypeKind::Scalar => {
                out.insert(format!("scalar {name}"), String::new());
            }
            TypeKind::Object(o) => {
                for f in o.fields {
                    let field = format!("{name}.{}", f.node.name.node);
                    for a in f.node.arguments {
                        let default = a.node.default_value.map(|d| d.node.to_string());
                        out.insert(
                            format!("{field}({})", a.node.name.node),
                            format!("{} = {default:?}", a.node.ty.node),
                        );
                    }
                    out.insert(field, f.node.ty.node.to_string());
                }
            }
            TypeKind::InputObject(o) => {
                for f in o.fields {
                    out.insert(
                        format!("{name}.{}", f.node.name.node),
                        f.node.ty.node.to_string(),
                    );
                }
            }
            TypeKind::Enum(e) => {
                for v in e.values {
                    out.insert(format!("{name}.{}", v.node.value.node), String::new());
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_contracts_core_schema_is_served_exactly() {
    let ours = signatures(&gateway::graphql::sdl());
    let contract = signatures(&format!("scalar Decimal\nscalar DateTime\n{CONTRACT}"));
    assert!(
        contract.len() > 60,
        "the contract's schema was read: {contract:?}"
    );
    let differing: Vec<String> = contract
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: contract `{v}`, ours `{:?}`", ours.get(k)))
        .collect();
    assert!(differing.is_empty(), "{differing:#?}");
}
