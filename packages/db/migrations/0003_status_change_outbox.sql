ALTER TABLE "member_status_changes" ADD COLUMN "notified_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "member_status_changes_unnotified_idx" ON "member_status_changes" USING btree ("at") WHERE notified_at IS NULL;--> statement-breakpoint
-- Changes made before the outbox existed were sent when they were made.
UPDATE "member_status_changes" SET "notified_at" = "at";
