DROP INDEX "labels_uri_seq_idx";--> statement-breakpoint
CREATE INDEX "labels_uri_c_seq_idx" ON "labels" USING btree (("uri" collate "C"),"seq");