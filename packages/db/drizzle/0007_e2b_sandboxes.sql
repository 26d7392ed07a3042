CREATE TABLE "e2b_sandboxes" (
	"session_id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"token_id" text,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"envs_sealed" text,
	"token_sealed" text NOT NULL,
	"ends_at" timestamp with time zone,
	"on_timeout" text DEFAULT 'kill' NOT NULL,
	"public_traffic" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "e2b_sandboxes" ADD CONSTRAINT "e2b_sandboxes_session_id_fkey" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "e2b_sandboxes_owner" ON "e2b_sandboxes" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "e2b_sandboxes_ends_at" ON "e2b_sandboxes" USING btree ("ends_at");