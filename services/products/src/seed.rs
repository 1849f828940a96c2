//! The demo catalogue `make up` starts with: about 100 products in 8 categories, inserted once
//! (only into an empty catalogue, under a lock, so replicas and restarts never duplicate it).

use rust_decimal::Decimal;
use sqlx::PgPool;

const CATEGORIES: [(&str, &[&str], &[&str]); 8] = [
    (
        "electronics",
        &[
            "Wireless Earbuds",
            "Bluetooth Speaker",
            "USB-C Charger",
            "Noise-Cancelling Headphones",
            "Smart Watch",
            "Portable SSD",
            "Mechanical Keyboard",
            "4K Webcam",
            "E-Reader",
            "Power Bank",
            "Laptop Stand",
            "Wireless Mouse",
            "HDMI Cable",
        ],
        &["Compact", "Pro", "Lite"],
    ),
    (
        "books",
        &[
            "Rust in Action",
            "The Pragmatic Programmer",
            "Designing Data-Intensive Applications",
            "Clean Architecture",
            "The Art of Computer Programming",
            "Refactoring",
            "Domain-Driven Design",
            "Site Reliability Engineering",
            "Database Internals",
            "Zero to Production",
            "Programming Rust",
            "Release It!",
        ],
        &["Paperback", "Hardcover"],
    ),
    (
        "kitchen",
        &[
            "Chef's Knife",
            "Cast Iron Skillet",
            "French Press",
            "Pour-Over Kettle",
            "Cutting Board",
            "Espresso Cups",
            "Mixing Bowls",
            "Stand Mixer",
            "Spice Grinder",
            "Dutch Oven",
            "Salad Spinner",
            "Measuring Spoons",
        ],
        &["Classic", "Deluxe"],
    ),
    (
        "outdoor",
        &[
            "Trail Running Shoes",
            "Hiking Backpack",
            "Camping Tent",
            "Sleeping Bag",
            "Headlamp",
            "Water Filter",
            "Trekking Poles",
            "Insulated Bottle",
            "Rain Jacket",
            "Camp Stove",
            "Hammock",
            "First Aid Kit",
        ],
        &["Ultralight", "All-Season"],
    ),
    (
        "home",
        &[
            "Desk Lamp",
            "Throw Blanket",
            "Scented Candle",
            "Wall Clock",
            "Plant Pot",
            "Linen Curtains",
            "Storage Baskets",
            "Door Mat",
            "Picture Frame",
            "Bath Towels",
            "Bookshelf",
            "Floor Cushion",
        ],
        &["Natural", "Modern"],
    ),
    (
        "toys",
        &[
            "Wooden Train Set",
            "Building Blocks",
            "Puzzle 1000 Pieces",
            "Board Game",
            "Plush Bear",
            "Kite",
            "Remote Control Car",
            "Art Set",
            "Marble Run",
            "Chess Set",
            "Yo-Yo",
            "Science Kit",
        ],
        &["Junior", "Family"],
    ),
    (
        "sports",
        &[
            "Yoga Mat",
            "Adjustable Dumbbells",
            "Jump Rope",
            "Tennis Racket",
            "Football",
            "Cycling Gloves",
            "Foam Roller",
            "Resistance Bands",
            "Swim Goggles",
            "Basketball",
            "Running Belt",
            "Kettlebell",
        ],
        &["Training", "Competition"],
    ),
    (
        "beauty",
        &[
            "Face Cleanser",
            "Moisturising Cream",
            "Lip Balm",
            "Shampoo Bar",
            "Hand Cream",
            "Sunscreen SPF 50",
            "Hair Brush",
            "Body Lotion",
            "Bath Salts",
            "Nail Kit",
            "Beard Oil",
            "Sheet Masks",
        ],
        &["Sensitive", "Everyday"],
    ),
];

/// The demo products: deterministic, so every laptop shows the same shop.
pub fn demo_products() -> Vec<(String, String, Decimal, i64, String)> {
    let mut out = Vec::new();
    for (ci, (category, names, variants)) in CATEGORIES.iter().enumerate() {
        for (ni, name) in names.iter().enumerate() {
            let variant = variants[ni % variants.len()];
            let seed = (ci * 31 + ni * 17) as i64;
            // Prices like 4.99 .. 249.99, stock 0 .. 120 (a few sold out, as in a real shop).
            let cents = 499 + (seed * 1_337) % 24_500;
            let price = Decimal::new(cents - cents % 100 + 99, 2);
            let stock = if ni % 11 == 10 {
                0
            } else {
                5 + (seed * 7) % 116
            };
            let description = format!(
                "{variant} {name} from our {category} range. A demo product: everything about it is made up, but you can search, order and pay for it."
            );
            out.push((
                format!("{name} ({variant})"),
                description,
                price,
                stock,
                (*category).to_owned(),
            ));
        }
    }
    out
}

/// Inserts the demo catalogue when the catalogue is empty. Returns how many were inserted.
pub async fn seed_demo(pool: &PgPool, currency: &str) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('ecom.products.seed'))")
        .execute(&mut *tx)
        .await?;
    if crate::repo::count_products(&mut *tx).await? > 0 {
        return Ok(0);
    }
    let products = demo_products();
    for (name, description, price, stock, category) in &products {
        sqlx::query!(
            "INSERT INTO products (name, description, price, currency, category, on_hand) VALUES ($1, $2, $3, $4, $5, $6)",
            name,
            description,
            price,
            currency,
            category,
            stock
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(count = products.len(), "demo catalogue seeded");
    Ok(products.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn about_a_hundred_products_in_eight_categories() {
        let p = super::demo_products();
        assert!((90..=110).contains(&p.len()), "{}", p.len());
        let mut cats: Vec<&str> = p.iter().map(|x| x.4.as_str()).collect();
        cats.sort_unstable();
        cats.dedup();
        assert_eq!(cats.len(), 8);
        assert!(
            p.iter()
                .all(|x| x.2.scale() == 2 && x.2 > rust_decimal::Decimal::ZERO)
        );
        let mut names: Vec<&str> = p.iter().map(|x| x.0.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), p.len(), "names are unique");
    }
}
