//! Generated gRPC types and clients/servers for every ecom API, compiled from `proto/`.
//!
//! Services depend on each other only through these types, never through each other's crates.

#![allow(clippy::all, clippy::pedantic)]

/// `ecom.users.v1`
pub mod users {
    pub mod v1 {
        tonic::include_proto!("ecom.users.v1");
    }
}

/// `ecom.products.v1`
pub mod products {
    pub mod v1 {
        tonic::include_proto!("ecom.products.v1");
    }
}

/// `ecom.orders.v1`
pub mod orders {
    pub mod v1 {
        tonic::include_proto!("ecom.orders.v1");
    }
}

/// `ecom.payments.v1`
pub mod payments {
    pub mod v1 {
        tonic::include_proto!("ecom.payments.v1");
    }
}

/// The encoded `FileDescriptorSet` of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ecom_descriptor");
