ALTER TABLE "feedback_events" DROP CONSTRAINT "feedback_events_type_check";--> statement-breakpoint
ALTER TABLE "suppressions" DROP CONSTRAINT "suppressions_reason_check";--> statement-breakpoint
-- One message, one vote: the extra events a replayed report or a repeated DSN recipient left behind go (the earliest of each message, recipient and type stays; the inbound message rows keep the reports themselves).
DELETE FROM "feedback_events" e USING "feedback_events" k WHERE e.message_id IS NOT NULL AND k.message_id = e.message_id AND k.recipient IS NOT DISTINCT FROM e.recipient AND k.type = e.type AND k.id < e.id;--> statement-breakpoint
CREATE UNIQUE INDEX "feedback_events_message_recipient_type_key" ON "feedback_events" USING btree ("message_id","recipient","type") WHERE message_id IS NOT NULL;--> statement-breakpoint
ALTER TABLE "feedback_events" ADD CONSTRAINT "feedback_events_type_check" CHECK (type IN ('complaint', 'hard_bounce', 'soft_bounce', 'unsubscribe'));--> statement-breakpoint
ALTER TABLE "suppressions" ADD CONSTRAINT "suppressions_reason_check" CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual'));