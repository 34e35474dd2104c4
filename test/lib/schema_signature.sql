-- schema_signature.sql: the ofs extension's objects, one line each, sorted,
-- so that two databases can be compared with diff: an upgraded one and a
-- fresh install of the same version (test/scripts/upgrade.sh).
--
-- A line names the object and carries everything a user or the C library
-- could tell apart: definitions, attribute numbers and types, defaults,
-- owners, grants (and the initial grants pg_dump keeps), comments, the
-- extension's membership and its dumped configuration tables.  Data (rows,
-- sequence values) is not part of it.
\pset tuples_only on
\pset format unaligned
WITH ext AS (SELECT oid, extnamespace FROM pg_extension WHERE extname = 'ofs'),
-- Its schema, and the schemas it made (ofs_internal).
nsp AS (SELECT extnamespace AS oid FROM ext
        UNION
        SELECT d.objid FROM pg_depend d, ext
         WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
           AND d.classid = 'pg_namespace'::regclass),
lines AS (
  -- The extension itself.
  SELECT 'extension ofs | version ' || e.extversion || ' | schema ' || e.extnamespace::regnamespace
         || ' | relocatable ' || e.extrelocatable
         || ' | config ' || coalesce((SELECT string_agg(c::regclass::text || ' where ' || coalesce(w, ''), ', ' ORDER BY c::regclass::text)
                                        FROM unnest(e.extconfig, e.extcondition) AS u(c, w)), '') AS line
    FROM pg_extension e WHERE e.extname = 'ofs'
  UNION ALL
  -- Every member object of the extension.
  SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
  UNION ALL
  -- The schema: owner, grants, comment.
  SELECT 'schema ' || n.nspname || ' | owner ' || n.nspowner::regrole || ' | acl ' || coalesce(n.nspacl::text, '-')
         || ' | comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
    FROM pg_namespace n, nsp WHERE n.oid = nsp.oid
  UNION ALL
  -- Functions and procedures: signature, result, language, attributes, body.
  SELECT 'function ' || p.oid::regprocedure || ' | returns ' || coalesce(pg_get_function_result(p.oid), '-')
         || ' | args ' || pg_get_function_arguments(p.oid)
         || ' | kind ' || p.prokind::text || ' | lang ' || l.lanname || ' | volatile ' || p.provolatile::text
         || ' | strict ' || p.proisstrict || ' | secdef ' || p.prosecdef || ' | parallel ' || p.proparallel::text
         || ' | leakproof ' || p.proleakproof || ' | cost ' || p.procost || ' | rows ' || p.prorows
         || ' | config ' || coalesce(p.proconfig::text, '-') || ' | owner ' || p.proowner::regrole
         || ' | acl ' || coalesce(p.proacl::text, '-') || ' | bin ' || coalesce(p.probin, '-')
         || ' | src ' || md5(p.prosrc)
         || ' | comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang, nsp WHERE p.pronamespace = nsp.oid
  UNION ALL
  -- Relations: tables, views, sequences, indexes, composite types.
  SELECT 'relation ' || c.oid::regclass || ' | kind ' || c.relkind::text || ' | persistence ' || c.relpersistence::text
         || ' | owner ' || c.relowner::regrole || ' | acl ' || coalesce(c.relacl::text, '-')
         || ' | options ' || coalesce(c.reloptions::text, '-') || ' | rls ' || c.relrowsecurity || '/' || c.relforcerowsecurity
         || ' | replident ' || c.relreplident::text
         || ' | comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
    FROM pg_class c, nsp WHERE c.relnamespace = nsp.oid
  UNION ALL
  -- Columns, by attribute number: the C library writes some tables by position.
  SELECT 'column ' || c.oid::regclass || ' #' || a.attnum || ' ' || quote_ident(a.attname)
         || ' | type ' || format_type(a.atttypid, a.atttypmod) || ' | notnull ' || a.attnotnull
         || ' | dropped ' || a.attisdropped || ' | identity ' || a.attidentity::text || ' | generated ' || a.attgenerated::text
         || ' | default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
         || ' | collation ' || coalesce(NULLIF(a.attcollation, 0)::regcollation::text, '-')
         || ' | acl ' || coalesce(a.attacl::text, '-')
         || ' | comment ' || coalesce(col_description(c.oid, a.attnum), '-')
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum, nsp
   WHERE c.relnamespace = nsp.oid
  UNION ALL
  -- Constraints of tables and domains.
  SELECT 'constraint ' || coalesce(r.conrelid::regclass::text, r.contypid::regtype::text) || ' ' || quote_ident(r.conname)
         || ' | ' || pg_get_constraintdef(r.oid)
         || ' | deferrable ' || r.condeferrable || '/' || r.condeferred
         || ' | comment ' || coalesce(obj_description(r.oid, 'pg_constraint'), '-')
    FROM pg_constraint r, nsp WHERE r.connamespace = nsp.oid
  UNION ALL
  -- Indexes.
  SELECT 'index ' || i.indexrelid::regclass || ' | ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid, nsp WHERE c.relnamespace = nsp.oid
  UNION ALL
  -- Views.
  SELECT 'view ' || c.oid::regclass || ' | ' || md5(pg_get_viewdef(c.oid))
    FROM pg_class c, nsp WHERE c.relnamespace = nsp.oid AND c.relkind::text IN ('v', 'm')
  UNION ALL
  -- Sequences.
  SELECT 'sequence ' || s.seqrelid::regclass || ' | type ' || s.seqtypid::regtype || ' | start ' || s.seqstart
         || ' | increment ' || s.seqincrement || ' | min ' || s.seqmin || ' | max ' || s.seqmax
         || ' | cache ' || s.seqcache || ' | cycle ' || s.seqcycle
         || ' | owned by ' || coalesce((SELECT d.refobjid::regclass || '.' || d.refobjsubid FROM pg_depend d
                                         WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                                           AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'), '-')
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid, nsp WHERE c.relnamespace = nsp.oid
  UNION ALL
  -- Triggers on ofs's own relations.
  SELECT 'trigger ' || t.tgrelid::regclass || ' ' || quote_ident(t.tgname) || ' | ' || pg_get_triggerdef(t.oid)
         || ' | enabled ' || t.tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid, nsp WHERE c.relnamespace = nsp.oid AND NOT t.tgisinternal
  UNION ALL
  -- Event triggers whose function is ofs's.
  SELECT 'event trigger ' || quote_ident(e.evtname) || ' | on ' || e.evtevent || ' | ' || e.evtfoid::regprocedure
         || ' | tags ' || coalesce(e.evttags::text, '-') || ' | enabled ' || e.evtenabled::text || ' | owner ' || e.evtowner::regrole
         || ' | comment ' || coalesce(obj_description(e.oid, 'pg_event_trigger'), '-')
    FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid, nsp WHERE p.pronamespace = nsp.oid
  UNION ALL
  -- Row-level security policies on ofs's own relations.
  SELECT 'policy ' || p.polrelid::regclass || ' ' || quote_ident(p.polname) || ' | cmd ' || p.polcmd::text
         || ' | permissive ' || p.polpermissive || ' | roles ' || p.polroles::regrole[]::text
         || ' | using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '-')
         || ' | check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid, nsp WHERE c.relnamespace = nsp.oid
  UNION ALL
  -- Types: composite, enum, domain, base; their owners, grants and comments.
  SELECT 'type ' || t.oid::regtype || ' | kind ' || t.typtype::text || ' | owner ' || t.typowner::regrole
         || ' | acl ' || coalesce(t.typacl::text, '-')
         || ' | base ' || coalesce(NULLIF(t.typbasetype, 0)::regtype::text, '-')
         || ' | labels ' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid), '-')
         || ' | comment ' || coalesce(obj_description(t.oid, 'pg_type'), '-')
    FROM pg_type t, nsp WHERE t.typnamespace = nsp.oid
  UNION ALL
  -- The initial privileges that pg_dump restores (written by extension scripts).
  SELECT 'init privs ' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid) || ' | ' || ip.privtype::text || ' | ' || ip.initprivs::text
    FROM pg_init_privs ip
   WHERE (ip.classoid = 'pg_class'::regclass AND ip.objoid IN (SELECT c.oid FROM pg_class c, nsp WHERE c.relnamespace = nsp.oid))
      OR (ip.classoid = 'pg_proc'::regclass AND ip.objoid IN (SELECT p.oid FROM pg_proc p, nsp WHERE p.pronamespace = nsp.oid))
      OR (ip.classoid = 'pg_namespace'::regclass AND ip.objoid IN (SELECT oid FROM nsp))
      OR (ip.classoid = 'pg_type'::regclass AND ip.objoid IN (SELECT t.oid FROM pg_type t, nsp WHERE t.typnamespace = nsp.oid))
)
SELECT line FROM lines ORDER BY line COLLATE "C";
