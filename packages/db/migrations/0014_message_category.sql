ALTER TABLE "messages" ADD COLUMN "category" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "body_hash" text;--> statement-breakpoint
CREATE INDEX "messages_body_hash_idx" ON "messages" USING btree ("received_at") WHERE body_hash IS NOT NULL;--> statement-breakpoint
-- NOT VALID, then VALIDATE: the check is enforced at once for new rows, and the scan of the existing ones holds no lock that blocks the spool.
ALTER TABLE "messages" ADD CONSTRAINT "messages_category_check" CHECK (category ~ '^[a-z0-9-]{1,40}$') NOT VALID;--> statement-breakpoint
ALTER TABLE "messages" VALIDATE CONSTRAINT "messages_category_check";
