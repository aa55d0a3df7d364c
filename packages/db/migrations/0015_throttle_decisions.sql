CREATE TABLE "throttle_decisions" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "throttle_decisions_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"member_id" bigint NOT NULL,
	"domain_id" bigint NOT NULL,
	"domain" text NOT NULL,
	"rule" text NOT NULL,
	"mode" text NOT NULL,
	"action" text NOT NULL,
	"figures" jsonb NOT NULL,
	"bucket" bigint NOT NULL,
	CONSTRAINT "throttle_decisions_rule_check" CHECK (rule IN ('spike', 'spray')),
	CONSTRAINT "throttle_decisions_mode_check" CHECK (mode IN ('shadow', 'enforce')),
	CONSTRAINT "throttle_decisions_action_check" CHECK (action IN ('deferred', 'would_defer'))
);
--> statement-breakpoint
ALTER TABLE "throttle_decisions" ADD CONSTRAINT "throttle_decisions_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "throttle_decisions" ADD CONSTRAINT "throttle_decisions_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "throttle_decisions_once_idx" ON "throttle_decisions" USING btree ("domain_id","rule","mode","bucket");--> statement-breakpoint
CREATE INDEX "throttle_decisions_at_idx" ON "throttle_decisions" USING btree ("at");--> statement-breakpoint
CREATE INDEX "throttle_decisions_member_idx" ON "throttle_decisions" USING btree ("member_id","at");--> statement-breakpoint
CREATE INDEX "messages_domain_idx" ON "messages" USING btree ("domain_id","received_at");