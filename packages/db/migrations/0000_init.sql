CREATE SEQUENCE "public"."label_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE TABLE "attestations" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "attestations_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"did" text NOT NULL,
	"rkey" text NOT NULL,
	"cid" text,
	"domain" text,
	"dkim_selectors" text[] DEFAULT '{}'::text[] NOT NULL,
	"relay_member" boolean DEFAULT false NOT NULL,
	"record_created_at" text,
	"record" jsonb,
	"state" text DEFAULT 'valid' NOT NULL,
	"rejection_reason" text,
	"seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted" boolean DEFAULT false NOT NULL,
	"deleted_at" timestamp with time zone,
	CONSTRAINT "attestations_state_check" CHECK (state IN ('valid', 'rejected'))
);
--> statement-breakpoint
CREATE TABLE "ingest_cursors" (
	"source" text PRIMARY KEY NOT NULL,
	"cursor" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "verification_checks" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "verification_checks_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"run_id" bigint NOT NULL,
	"check" text NOT NULL,
	"outcome" text NOT NULL,
	"reason" text NOT NULL,
	"warnings" text[] DEFAULT '{}'::text[] NOT NULL,
	"details" jsonb,
	CONSTRAINT "verification_checks_check_check" CHECK ("check" IN ('domain_control', 'mx', 'spf', 'dkim', 'dmarc')),
	CONSTRAINT "verification_checks_outcome_check" CHECK (outcome IN ('pass', 'fail', 'temperror'))
);
--> statement-breakpoint
CREATE TABLE "verification_runs" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "verification_runs_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"attestation_id" bigint,
	"did" text NOT NULL,
	"domain" text NOT NULL,
	"trigger" text NOT NULL,
	"outcome" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "verification_runs_outcome_check" CHECK (outcome IN ('pass', 'fail', 'temperror')),
	CONSTRAINT "verification_runs_trigger_check" CHECK (trigger IN ('ingest', 'schedule', 'manual', 'admin', 'identity'))
);
--> statement-breakpoint
CREATE TABLE "verification_status" (
	"did" text PRIMARY KEY NOT NULL,
	"domain" text NOT NULL,
	"last_run_id" bigint,
	"last_outcome" text NOT NULL,
	"last_run_at" timestamp with time zone NOT NULL,
	"last_pass_at" timestamp with time zone,
	"temperror_since" timestamp with time zone,
	"next_due_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "aggregate_feedback" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "aggregate_feedback_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"member_id" bigint NOT NULL,
	"provider" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"complaint_rate" numeric(8, 6) NOT NULL,
	"volume" integer,
	"recorded_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "feedback_events" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "feedback_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"type" text NOT NULL,
	"member_id" bigint,
	"message_id" uuid,
	"inbound_id" bigint,
	"recipient" text,
	"status" text,
	"reply_code" integer,
	"reason_class" text,
	"feedback_type" text,
	"source" text NOT NULL,
	"details" jsonb,
	"occurred_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "feedback_events_type_check" CHECK (type IN ('complaint', 'hard_bounce', 'soft_bounce'))
);
--> statement-breakpoint
CREATE TABLE "inbound_messages" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "inbound_messages_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"remote_address" text,
	"helo_name" text,
	"mail_from" text NOT NULL,
	"rcpt_to" text[] NOT NULL,
	"size" integer NOT NULL,
	"raw" "bytea" NOT NULL,
	"kind" text DEFAULT 'unclassified' NOT NULL,
	"state" text DEFAULT 'received' NOT NULL,
	"forwarded_message_id" uuid,
	"processed_at" timestamp with time zone,
	CONSTRAINT "inbound_messages_kind_check" CHECK (kind IN ('unclassified', 'arf', 'dsn', 'plain_bounce', 'operator', 'auto_reply')),
	CONSTRAINT "inbound_messages_state_check" CHECK (state IN ('received', 'processed', 'quarantined', 'forwarded'))
);
--> statement-breakpoint
CREATE TABLE "quarantined_reports" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "quarantined_reports_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"inbound_id" bigint NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"released_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "suppressions" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "suppressions_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"member_id" bigint NOT NULL,
	"address" text NOT NULL,
	"reason" text NOT NULL,
	"detail" text,
	"event_id" bigint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"removed_at" timestamp with time zone,
	"removed_by" text,
	CONSTRAINT "suppressions_reason_check" CHECK (reason IN ('hard_bounce', 'complaint', 'manual'))
);
--> statement-breakpoint
CREATE TABLE "label_signing_keys" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "label_signing_keys_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"did_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"retired_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "labels" (
	"seq" bigint PRIMARY KEY NOT NULL,
	"ver" integer DEFAULT 1 NOT NULL,
	"src" text NOT NULL,
	"uri" text NOT NULL,
	"cid" text,
	"val" text NOT NULL,
	"neg" boolean DEFAULT false NOT NULL,
	"cts" text NOT NULL,
	"exp" text,
	"sig" "bytea" NOT NULL,
	"signing_key_id" bigint NOT NULL,
	"reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "labels_src_uri_cid_val_key" UNIQUE NULLS NOT DISTINCT("src","uri","cid","val"),
	CONSTRAINT "labels_val_length_check" CHECK (char_length(val) <= 128)
);
--> statement-breakpoint
CREATE TABLE "delivery_attempts" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "delivery_attempts_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"recipient_id" bigint NOT NULL,
	"message_id" uuid NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"duration_ms" integer,
	"mx_host" text,
	"mx_address" text,
	"reply_code" integer,
	"enhanced_status" text,
	"reply" text,
	"outcome" text NOT NULL,
	CONSTRAINT "delivery_attempts_outcome_check" CHECK (outcome IN ('delivered', 'deferred', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "message_recipients" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "message_recipients_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"message_id" uuid NOT NULL,
	"address" text NOT NULL,
	"domain" text NOT NULL,
	"state" text DEFAULT 'queued' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone,
	"last_reply" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "message_recipients_state_check" CHECK (state IN ('queued', 'delivered', 'deferred', 'bounced', 'expired'))
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"member_id" bigint NOT NULL,
	"envelope_from" text NOT NULL,
	"return_path" text NOT NULL,
	"message_id_header" text,
	"size" integer NOT NULL,
	"body" "bytea" NOT NULL,
	"state" text DEFAULT 'queued' NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"done_at" timestamp with time zone,
	CONSTRAINT "messages_state_check" CHECK (state IN ('queued', 'done'))
);
--> statement-breakpoint
CREATE TABLE "send_volume" (
	"member_id" bigint NOT NULL,
	"day" date NOT NULL,
	"recipients" integer DEFAULT 0 NOT NULL,
	"messages" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "send_volume_member_id_day_pk" PRIMARY KEY("member_id","day")
);
--> statement-breakpoint
CREATE TABLE "dkim_keys" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "dkim_keys_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"member_id" bigint,
	"domain" text NOT NULL,
	"selector" text NOT NULL,
	"algorithm" text DEFAULT 'rsa-sha256' NOT NULL,
	"bits" integer,
	"public_key" text NOT NULL,
	"private_key_sealed" "bytea" NOT NULL,
	"kek_id" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"activated_at" timestamp with time zone,
	"retired_at" timestamp with time zone,
	CONSTRAINT "dkim_keys_algorithm_check" CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
	CONSTRAINT "dkim_keys_status_check" CHECK (status IN ('pending', 'active', 'retired'))
);
--> statement-breakpoint
CREATE TABLE "member_status_changes" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "member_status_changes_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"member_id" bigint NOT NULL,
	"from_status" text,
	"to_status" text NOT NULL,
	"reason" text NOT NULL,
	"actor" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "members" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "members_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"did" text NOT NULL,
	"handle" text,
	"domain" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"status_reason" text,
	"enrolled_at" timestamp with time zone DEFAULT now() NOT NULL,
	"activated_at" timestamp with time zone,
	"suspended_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "members_status_check" CHECK (status IN ('pending', 'active', 'suspended')),
	CONSTRAINT "members_domain_lower_check" CHECK (domain = lower(domain))
);
--> statement-breakpoint
CREATE TABLE "smtp_credentials" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "smtp_credentials_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"member_id" bigint NOT NULL,
	"username" text NOT NULL,
	"password_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "oauth_sessions" (
	"sub" text PRIMARY KEY NOT NULL,
	"value_sealed" "bytea" NOT NULL,
	"kek_id" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "oauth_states" (
	"key" text PRIMARY KEY NOT NULL,
	"value_sealed" "bytea" NOT NULL,
	"kek_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "verification_checks" ADD CONSTRAINT "verification_checks_run_id_verification_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."verification_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "verification_runs" ADD CONSTRAINT "verification_runs_attestation_id_attestations_id_fk" FOREIGN KEY ("attestation_id") REFERENCES "public"."attestations"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "verification_status" ADD CONSTRAINT "verification_status_last_run_id_verification_runs_id_fk" FOREIGN KEY ("last_run_id") REFERENCES "public"."verification_runs"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "aggregate_feedback" ADD CONSTRAINT "aggregate_feedback_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "feedback_events" ADD CONSTRAINT "feedback_events_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "feedback_events" ADD CONSTRAINT "feedback_events_inbound_id_inbound_messages_id_fk" FOREIGN KEY ("inbound_id") REFERENCES "public"."inbound_messages"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "quarantined_reports" ADD CONSTRAINT "quarantined_reports_inbound_id_inbound_messages_id_fk" FOREIGN KEY ("inbound_id") REFERENCES "public"."inbound_messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "suppressions" ADD CONSTRAINT "suppressions_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "suppressions" ADD CONSTRAINT "suppressions_event_id_feedback_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."feedback_events"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "labels" ADD CONSTRAINT "labels_signing_key_id_label_signing_keys_id_fk" FOREIGN KEY ("signing_key_id") REFERENCES "public"."label_signing_keys"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "delivery_attempts" ADD CONSTRAINT "delivery_attempts_recipient_id_message_recipients_id_fk" FOREIGN KEY ("recipient_id") REFERENCES "public"."message_recipients"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "message_recipients" ADD CONSTRAINT "message_recipients_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "messages" ADD CONSTRAINT "messages_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "send_volume" ADD CONSTRAINT "send_volume_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dkim_keys" ADD CONSTRAINT "dkim_keys_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "member_status_changes" ADD CONSTRAINT "member_status_changes_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "smtp_credentials" ADD CONSTRAINT "smtp_credentials_member_id_members_id_fk" FOREIGN KEY ("member_id") REFERENCES "public"."members"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "attestations_did_rkey_key" ON "attestations" USING btree ("did","rkey");--> statement-breakpoint
CREATE INDEX "attestations_domain_idx" ON "attestations" USING btree ("domain");--> statement-breakpoint
CREATE INDEX "attestations_live_idx" ON "attestations" USING btree ("id") WHERE NOT deleted AND state = 'valid';--> statement-breakpoint
CREATE UNIQUE INDEX "verification_checks_run_check_key" ON "verification_checks" USING btree ("run_id","check");--> statement-breakpoint
CREATE INDEX "verification_runs_did_idx" ON "verification_runs" USING btree ("did","started_at");--> statement-breakpoint
CREATE INDEX "verification_status_due_idx" ON "verification_status" USING btree ("next_due_at");--> statement-breakpoint
CREATE UNIQUE INDEX "aggregate_feedback_period_key" ON "aggregate_feedback" USING btree ("member_id","provider","period_start");--> statement-breakpoint
CREATE INDEX "feedback_events_member_idx" ON "feedback_events" USING btree ("member_id","type","occurred_at");--> statement-breakpoint
CREATE INDEX "feedback_events_message_idx" ON "feedback_events" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "inbound_messages_received_idx" ON "inbound_messages" USING btree ("state","received_at");--> statement-breakpoint
CREATE INDEX "inbound_messages_kind_idx" ON "inbound_messages" USING btree ("kind","received_at");--> statement-breakpoint
CREATE INDEX "quarantined_reports_open_idx" ON "quarantined_reports" USING btree ("created_at") WHERE released_at IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "suppressions_member_address_key" ON "suppressions" USING btree ("member_id","address") WHERE removed_at IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "label_signing_keys_did_key_key" ON "label_signing_keys" USING btree ("did_key");--> statement-breakpoint
CREATE INDEX "labels_uri_seq_idx" ON "labels" USING btree ("uri" text_pattern_ops,"seq");--> statement-breakpoint
CREATE INDEX "delivery_attempts_recipient_idx" ON "delivery_attempts" USING btree ("recipient_id","started_at");--> statement-breakpoint
CREATE INDEX "delivery_attempts_message_idx" ON "delivery_attempts" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "message_recipients_message_idx" ON "message_recipients" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "message_recipients_pending_idx" ON "message_recipients" USING btree ("next_attempt_at") WHERE state IN ('queued', 'deferred');--> statement-breakpoint
CREATE INDEX "messages_member_idx" ON "messages" USING btree ("member_id","received_at");--> statement-breakpoint
CREATE INDEX "messages_queued_idx" ON "messages" USING btree ("received_at") WHERE state = 'queued';--> statement-breakpoint
CREATE UNIQUE INDEX "dkim_keys_domain_selector_key" ON "dkim_keys" USING btree ("domain","selector");--> statement-breakpoint
CREATE INDEX "dkim_keys_member_idx" ON "dkim_keys" USING btree ("member_id","status");--> statement-breakpoint
CREATE INDEX "member_status_changes_member_idx" ON "member_status_changes" USING btree ("member_id","at");--> statement-breakpoint
CREATE UNIQUE INDEX "members_did_key" ON "members" USING btree ("did");--> statement-breakpoint
CREATE UNIQUE INDEX "members_domain_key" ON "members" USING btree ("domain");--> statement-breakpoint
CREATE INDEX "members_status_idx" ON "members" USING btree ("status");--> statement-breakpoint
CREATE UNIQUE INDEX "smtp_credentials_username_key" ON "smtp_credentials" USING btree ("username");--> statement-breakpoint
CREATE INDEX "smtp_credentials_member_idx" ON "smtp_credentials" USING btree ("member_id");--> statement-breakpoint
CREATE INDEX "oauth_states_expires_idx" ON "oauth_states" USING btree ("expires_at");