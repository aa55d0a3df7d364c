ALTER TABLE "member_status_changes" ADD COLUMN "applied_at" timestamp with time zone;--> statement-breakpoint
-- Changes already sent before this column existed were applied long ago: do not send them all again.
UPDATE "member_status_changes" SET "applied_at" = "notified_at" WHERE "notified_at" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "member_status_changes_unapplied_idx" ON "member_status_changes" USING btree ("at") WHERE applied_at IS NULL;
