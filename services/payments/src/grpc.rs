//! The gRPC adapter (`ecom.payments.v1.PaymentService`).

use std::sync::Arc;

use chrono::Utc;
use ecom_proto::payments::v1::{
    self as pb, GetPaymentRequest, ListPaymentsRequest, ListPaymentsResponse, PayRequest,
    PayResponse, payment_service_server::PaymentService,
};
use ecom_shared::{
    auth::{JwtVerifier, grpc_bearer_token, grpc_caller, grpc_user},
    idempotency::IdempotencyKey,
    json::Lenient,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{CardFields, Pay, PayError, Payment, PaymentStatus},
    error::Error,
    service::{Paid, PaymentsService},
};

/// The command `POST /payments` would make of the same fields (so validation and the
/// idempotency fingerprint are the HTTP ones); an empty key is no key. The card stays in
/// memory only, as over HTTP.
impl TryFrom<PayRequest> for Pay {
    type Error = PayError;

    fn try_from(r: PayRequest) -> Result<Self, PayError> {
        let card = r.card.map(|c| CardFields {
            number: Some(c.number),
            exp_month: Some(c.exp_month.into()),
            exp_year: Some(c.exp_year.into()),
            cvc: Some(c.cvc),
        });
        let key = Some(r.idempotency_key.as_str()).filter(|k| !k.is_empty());
        Pay::new(
            Some(Lenient::Valid(r.order_id)),
            card,
            IdempotencyKey::parse_optional(key),
            Utc::now(),
        )
    }
}

pub struct PaymentsGrpc {
    pub payments: Arc<PaymentsService>,
    pub verifier: Arc<JwtVerifier>,
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn payment_pb(p: Payment) -> pb::Payment {
    use pb::PaymentStatus as S;
    pb::Payment {
        id: p.id,
        order_id: p.order_id,
        user_id: p.user_id,
        amount: p.amount.to_string(),
        currency: p.currency,
        status: match p.status {
            PaymentStatus::Processing => S::Processing,
            PaymentStatus::Succeeded => S::Succeeded,
            PaymentStatus::Failed => S::Failed,
            PaymentStatus::Refunded => S::Refunded,
        } as i32,
        failure_code: p.failure_code.unwrap_or_default(),
        card_brand: p.card.brand,
        card_last4: p.card.last4,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentsGrpc {
    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let caller = grpc_caller(&self.verifier, &request).await?;
        let payment = self
            .payments
            .get_for(&caller, request.into_inner().id)
            .await?;
        Ok(Response::new(payment_pb(payment)))
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let caller = grpc_caller(&self.verifier, &request).await?;
        let ids = request.into_inner().order_ids;
        let payments = self.payments.of_orders(&caller, &ids).await?;
        Ok(Response::new(ListPaymentsResponse {
            payments: payments.into_iter().map(payment_pb).collect(),
        }))
    }

    async fn pay(&self, request: Request<PayRequest>) -> Result<Response<PayResponse>, Status> {
        let user = grpc_user(&self.verifier, &request).await?;
        let token = grpc_bearer_token(&request);
        let pay = Pay::try_from(request.into_inner()).map_err(Error::from)?;
        // A declined card is a FAILED payment returned normally, as HTTP answers 201.
        let (payment, created) = match self.payments.pay(user, &token, pay).await? {
            Paid::New(p) => (p, true),
            Paid::Replayed(p) => (p, false),
        };
        Ok(Response::new(PayResponse {
            payment: Some(payment_pb(payment)),
            created,
        }))
    }
}
