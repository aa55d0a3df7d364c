CREATE TABLE "audit_log" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "audit_log_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"did" text,
	"domain" text,
	"member_id" bigint,
	"detail" jsonb
);
--> statement-breakpoint
CREATE TABLE "domains" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "domains_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"member_id" bigint NOT NULL,
	"domain" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"status_reason" text,
	"activated_at" timestamp with time zone,
	"suspended_at" timestamp with time zone,
	"forward_to" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"removed_at" timestamp with time zone,
	"removed_reason" text,
	CONSTRAINT "domains_status_check" CHECK (status IN ('pending', 'active', 'suspended')),
	CONSTRAINT "domains_domain_lower_check" CHECK (domain = lower(domain))
);
--> statement-breakpoint
-- Domains become the unit of sending: every member's one domain becomes its first domains row.
ALTER TABLE "domains" ADD CONSTRAINT "domains_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
INSERT INTO "domains" ("member_id", "domain", "status", "activated_at", "created_at", "updated_at") SELECT "id", "domain", 'active', "activated_at", "enrolled_at", "updated_at" FROM "members" ORDER BY "id";--> statement-breakpoint
INSERT INTO "audit_log" ("actor", "action", "did", "domain", "member_id", "detail") SELECT 'migration', 'domain.added', m."did", m."domain", m."id", '{"note":"the member''s one domain before several were allowed"}'::jsonb FROM "members" m ORDER BY m."id";--> statement-breakpoint
ALTER TABLE "smtp_credentials" ADD COLUMN "domain_id" bigint;--> statement-breakpoint
UPDATE "smtp_credentials" c SET "domain_id" = d."id" FROM "domains" d WHERE d."member_id" = c."member_id";--> statement-breakpoint
ALTER TABLE "dkim_keys" ADD COLUMN "domain_id" bigint;--> statement-breakpoint
UPDATE "dkim_keys" k SET "domain_id" = d."id" FROM "domains" d WHERE d."member_id" = k."member_id" AND d."domain" = k."domain";--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "domain_id" bigint;--> statement-breakpoint
UPDATE "messages" msg SET "domain_id" = d."id" FROM "domains" d WHERE d."member_id" = msg."member_id";--> statement-breakpoint
ALTER TABLE "suppressions" ADD COLUMN "domain_id" bigint;--> statement-breakpoint
UPDATE "suppressions" s SET "domain_id" = d."id" FROM "domains" d WHERE d."member_id" = s."member_id";--> statement-breakpoint
ALTER TABLE "member_status_changes" ADD COLUMN "domain_id" bigint;--> statement-breakpoint
ALTER TABLE "send_volume" ADD COLUMN "domain_id" bigint;--> statement-breakpoint
UPDATE "send_volume" v SET "domain_id" = d."id" FROM "domains" d WHERE d."member_id" = v."member_id";--> statement-breakpoint
ALTER TABLE "send_volume" ALTER COLUMN "domain_id" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "send_volume" DROP CONSTRAINT "send_volume_member_id_day_pk";--> statement-breakpoint
ALTER TABLE "send_volume" ADD CONSTRAINT "send_volume_domain_id_day_pk" PRIMARY KEY("domain_id","day");--> statement-breakpoint
ALTER TABLE "verification_status" DROP CONSTRAINT "verification_status_pkey";--> statement-breakpoint
ALTER TABLE "verification_status" ADD CONSTRAINT "verification_status_did_domain_pk" PRIMARY KEY("did","domain");--> statement-breakpoint
ALTER TABLE "verification_status" ADD COLUMN "holds" boolean DEFAULT false NOT NULL;--> statement-breakpoint
-- A DID holds its domain when its verified-mail-operator label stands now (the latest
-- passing DID per domain, should two have passed for the same one before this rule).
UPDATE "verification_status" vs SET "holds" = true WHERE vs."did" IN (SELECT DISTINCT ON (v."domain") v."did" FROM "verification_status" v WHERE v."last_pass_at" IS NOT NULL AND EXISTS (SELECT 1 FROM "labels" l WHERE l."uri" = v."did" AND l."val" = 'verified-mail-operator' AND NOT l."neg" AND (l."exp" IS NULL OR l."exp"::timestamptz > now())) ORDER BY v."domain", v."last_pass_at" DESC) ;--> statement-breakpoint
ALTER TABLE "verification_runs" DROP CONSTRAINT "verification_runs_trigger_check";--> statement-breakpoint
ALTER TABLE "verification_runs" ADD CONSTRAINT "verification_runs_trigger_check" CHECK (trigger IN ('ingest', 'schedule', 'manual', 'admin', 'identity', 'release'));--> statement-breakpoint
ALTER TABLE "members" DROP CONSTRAINT "members_domain_lower_check";--> statement-breakpoint
DROP INDEX "members_domain_key";--> statement-breakpoint
ALTER TABLE "members" DROP COLUMN "domain";--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "audit_log_did_idx" ON "audit_log" USING btree ("did","at");--> statement-breakpoint
CREATE INDEX "audit_log_domain_idx" ON "audit_log" USING btree ("domain","at");--> statement-breakpoint
CREATE INDEX "audit_log_action_idx" ON "audit_log" USING btree ("action","at");--> statement-breakpoint
CREATE UNIQUE INDEX "domains_domain_held_key" ON "domains" USING btree ("domain") WHERE removed_at IS NULL;--> statement-breakpoint
CREATE INDEX "domains_member_idx" ON "domains" USING btree ("member_id");--> statement-breakpoint
ALTER TABLE "suppressions" ADD CONSTRAINT "suppressions_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "messages" ADD CONSTRAINT "messages_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "send_volume" ADD CONSTRAINT "send_volume_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dkim_keys" ADD CONSTRAINT "dkim_keys_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "member_status_changes" ADD CONSTRAINT "member_status_changes_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "smtp_credentials" ADD CONSTRAINT "smtp_credentials_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "verification_status_holder_key" ON "verification_status" USING btree ("domain") WHERE holds;--> statement-breakpoint
CREATE INDEX "send_volume_member_idx" ON "send_volume" USING btree ("member_id","day");--> statement-breakpoint
CREATE INDEX "dkim_keys_domain_idx" ON "dkim_keys" USING btree ("domain_id","status");
