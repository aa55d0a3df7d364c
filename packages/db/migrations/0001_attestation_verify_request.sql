ALTER TABLE "attestations" ADD COLUMN "verify_requested_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "attestations" ADD COLUMN "verify_trigger" text;--> statement-breakpoint
CREATE INDEX "attestations_verify_requested_idx" ON "attestations" USING btree ("verify_requested_at") WHERE verify_requested_at IS NOT NULL;