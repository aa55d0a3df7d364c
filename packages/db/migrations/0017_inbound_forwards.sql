CREATE TABLE "inbound_forwards" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "inbound_forwards_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"inbound_id" bigint NOT NULL,
	"member_id" bigint NOT NULL,
	"domain_id" bigint NOT NULL,
	"recipient" text NOT NULL,
	"forward_to" text NOT NULL,
	"state" text NOT NULL,
	"reason" text,
	"message_id" uuid,
	"return_path" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"bounced_at" timestamp with time zone,
	"bounce_inbound_id" bigint,
	CONSTRAINT "inbound_forwards_state_check" CHECK (state IN ('forwarded', 'refused', 'bounced'))
);
--> statement-breakpoint
ALTER TABLE "inbound_messages" DROP CONSTRAINT "inbound_messages_kind_check";--> statement-breakpoint
ALTER TABLE "inbound_forwards" ADD CONSTRAINT "inbound_forwards_inbound_id_inbound_messages_id_fk" FOREIGN KEY ("inbound_id") REFERENCES "public"."inbound_messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inbound_forwards" ADD CONSTRAINT "inbound_forwards_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inbound_forwards" ADD CONSTRAINT "inbound_forwards_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inbound_forwards" ADD CONSTRAINT "inbound_forwards_bounce_inbound_id_inbound_messages_id_fk" FOREIGN KEY ("bounce_inbound_id") REFERENCES "public"."inbound_messages"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "inbound_forwards_inbound_domain_key" ON "inbound_forwards" USING btree ("inbound_id","domain_id");--> statement-breakpoint
CREATE INDEX "inbound_forwards_domain_idx" ON "inbound_forwards" USING btree ("domain_id","created_at");--> statement-breakpoint
CREATE INDEX "inbound_forwards_return_path_idx" ON "inbound_forwards" USING btree ("return_path","created_at") WHERE return_path <> '';--> statement-breakpoint
ALTER TABLE "inbound_messages" ADD CONSTRAINT "inbound_messages_kind_check" CHECK (kind IN ('unclassified', 'arf', 'dsn', 'plain_bounce', 'operator', 'auto_reply', 'reply'));