ALTER TABLE "message_recipients" DROP CONSTRAINT "message_recipients_state_check";--> statement-breakpoint
ALTER TABLE "delivery_attempts" ADD COLUMN "tls" jsonb;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "bounce_notice_id" uuid;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "require_tls" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "message_recipients" ADD CONSTRAINT "message_recipients_state_check" CHECK (state IN ('queued', 'delivered', 'deferred', 'bounced', 'expired', 'failed'));