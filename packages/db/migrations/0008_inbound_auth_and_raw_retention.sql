ALTER TABLE "inbound_messages" ADD COLUMN "auth" jsonb;--> statement-breakpoint
ALTER TABLE "inbound_messages" ADD COLUMN "raw_purged_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "inbound_messages_purgeable_idx" ON "inbound_messages" USING btree ("received_at") WHERE state <> 'received' AND raw_purged_at IS NULL;