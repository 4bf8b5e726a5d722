//! Which platform a sender sends through. Each kind has exactly one provider module
//! (`providers::module_of`), which knows everything else about it.

super::named_enum! {
    pub enum ProviderKind {
        /// Herald's simulator: latency, failures, deliveries and reads on demand.
        Sandbox => "sandbox",
        /// A gateway the user writes, called with a JSON body Herald renders.
        Http => "http",
        /// Meta's WhatsApp Cloud API.
        WhatsappCloud => "whatsapp_cloud",
        /// Zagely's v1 API (key pair, idempotency keys, signed webhooks).
        Zagely => "zagely",
        /// Botbiz's WhatsApp API (bearer key, per-plan rate limits).
        Botbiz => "botbiz",
        /// A Chattu server (`x-api-key`, a WhatsApp client per sender).
        Chattu => "chattu",
        /// Mavibot's API (the key in the path, a connected WhatsApp bot per sender).
        Mavibot => "mavibot",
        /// MazBot, a WhatsApp Cloud reseller (apikey and a JWT; inbound messages polled).
        Mazbot => "mazbot",
    }
}
