//! sqlx encodings for the domain's types: ids are UUIDs on the wire (a 16-byte blob in SQLite,
//! `uuid` in PostgreSQL), enums and zones their names, times of day `HH:MM`. A stored value that
//! does not parse fails the read (`StoreError::Corrupt`), never becomes a default. Kept here so
//! the domain stays free of SQL.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};
use uuid::Uuid;

use crate::domain::ids::*;
use crate::domain::time::LocalTime;

macro_rules! uuid_sql_type {
    ($($name:ident),*) => {$(
        impl<DB: Database> Type<DB> for $name
        where
            Uuid: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <Uuid as Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <Uuid as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $name
        where
            Uuid: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <Uuid as Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $name
        where
            Uuid: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <Uuid as Decode<'r, DB>>::decode(value).map(Self)
            }
        }
    )*};
}

uuid_sql_type!(
    WorkspaceId,
    ApiKeyId,
    ContactId,
    GroupId,
    TemplateId,
    SenderId,
    CampaignId,
    MessageId,
    ImportId,
    AutomationId,
    AutomationRunId,
    WebhookId,
    DeliveryId
);

/// Enums stored as their text name (`'draft'`, `'pending'`, …), checked by the schema.
macro_rules! text_sql_type {
    ($($name:ty),*) => {$(
        impl<DB: Database> Type<DB> for $name
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $name
        where
            &'static str: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <&'static str as Encode<'q, DB>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $name
        where
            String: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<String as Decode<'r, DB>>::decode(value)?.parse()?)
            }
        }
    )*};
}

text_sql_type!(
    crate::domain::campaign::CampaignStatus,
    crate::domain::message::MessageStatus,
    crate::domain::group::GroupKind,
    crate::domain::contact::ImportStatus,
    crate::domain::message::Direction,
    crate::domain::time::Zone,
    crate::domain::provider::ProviderKind,
    crate::domain::automation::TriggerType,
    crate::domain::webhook::DeliveryStatus
);

/// A wall-clock time, stored as its `HH:MM` text.
impl<DB: Database> Type<DB> for LocalTime
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: Database> Encode<'q, DB> for LocalTime
where
    String: Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, DB>>::encode(self.to_string(), buf)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for LocalTime
where
    String: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(<String as Decode<'r, DB>>::decode(value)?.parse()?)
    }
}
