-- Provider status reports that name no message yet: a callback can overtake the record of the
-- send it reports on (the provider's id is not stored until then). They are kept here, in the
-- transaction that answered the callback, and applied once the send is recorded, so a callback
-- answered 2xx is never lost, even if the process dies (invariant 7).
CREATE TABLE parked_reports (
    id           BLOB PRIMARY KEY,
    sender_id    BLOB NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    -- Herald's message id or the provider's, as the report named it.
    reference    TEXT NOT NULL,
    -- sent | delivered | read | failed
    kind         TEXT NOT NULL,
    at           TEXT NOT NULL,
    error        TEXT,
    received_at  TEXT NOT NULL
);

CREATE INDEX parked_reports_reference ON parked_reports (sender_id, reference);
CREATE INDEX parked_reports_received ON parked_reports (received_at);
