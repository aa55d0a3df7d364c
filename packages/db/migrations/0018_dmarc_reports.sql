CREATE TABLE "dmarc_report_rows" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "dmarc_report_rows_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"report_id" bigint NOT NULL,
	"source_ip" text NOT NULL,
	"reverse_name" text,
	"pool_ip" boolean NOT NULL,
	"count" integer NOT NULL,
	"disposition" text NOT NULL,
	"dkim_aligned" text NOT NULL,
	"spf_aligned" text NOT NULL,
	"header_from" text NOT NULL,
	"envelope_from" text,
	"dkim_auth" text DEFAULT '' NOT NULL,
	"spf_auth" text DEFAULT '' NOT NULL
);
--> statement-breakpoint
CREATE TABLE "dmarc_reports" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "dmarc_reports_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"inbound_id" bigint,
	"org_name" text NOT NULL,
	"report_id" text NOT NULL,
	"org_email" text NOT NULL,
	"verified_sender" text,
	"policy_domain" text NOT NULL,
	"member_id" bigint,
	"domain_id" bigint,
	"date_begin" timestamp with time zone NOT NULL,
	"date_end" timestamp with time zone NOT NULL,
	"rows" integer NOT NULL,
	"rows_elsewhere" integer DEFAULT 0 NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "inbound_messages" DROP CONSTRAINT "inbound_messages_kind_check";--> statement-breakpoint
ALTER TABLE "dmarc_report_rows" ADD CONSTRAINT "dmarc_report_rows_report_id_dmarc_reports_id_fk" FOREIGN KEY ("report_id") REFERENCES "public"."dmarc_reports"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dmarc_reports" ADD CONSTRAINT "dmarc_reports_inbound_id_inbound_messages_id_fk" FOREIGN KEY ("inbound_id") REFERENCES "public"."inbound_messages"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dmarc_reports" ADD CONSTRAINT "dmarc_reports_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dmarc_reports" ADD CONSTRAINT "dmarc_reports_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "dmarc_report_rows_report_idx" ON "dmarc_report_rows" USING btree ("report_id");--> statement-breakpoint
CREATE UNIQUE INDEX "dmarc_reports_org_report_key" ON "dmarc_reports" USING btree ("org_name","report_id");--> statement-breakpoint
CREATE INDEX "dmarc_reports_domain_idx" ON "dmarc_reports" USING btree ("domain_id","date_begin") WHERE domain_id IS NOT NULL;--> statement-breakpoint
ALTER TABLE "inbound_messages" ADD CONSTRAINT "inbound_messages_kind_check" CHECK (kind IN ('unclassified', 'arf', 'dsn', 'plain_bounce', 'operator', 'auto_reply', 'reply', 'dmarc'));